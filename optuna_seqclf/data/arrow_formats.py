"""Examples from Arrow data: a Parquet file, or a split of a ``DatasetDict`` saved with ``save_to_disk``.

Columns are found in any case; a text column must hold strings, a label column strings, integers or booleans.
A ``ClassLabel`` feature's names (from ``datasets``' features, or the schema metadata it writes into Parquet)
are used as the labels. Rows are read in batches, so a large file is never held as Python objects at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from optuna_seqclf.data.records import Columns, Example, checked_label, checked_text, where
from optuna_seqclf.errors import DataError

if TYPE_CHECKING:
    import pyarrow

ARROW_BATCH = 65536


def parquet_examples(source: BinaryIO | Path, name: str, columns: Columns) -> Iterator[Example]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except (pyarrow.ArrowInvalid, OSError) as exc:
        raise DataError(f"{name}: not a Parquet file ({str(exc).splitlines()[0]})") from None
    metadata = parquet.schema_arrow.metadata or {}
    names = _class_label_names(metadata.get(b"huggingface"))
    picked = _arrow_columns(parquet.schema_arrow, name, columns)
    batches = parquet.iter_batches(batch_size=ARROW_BATCH, columns=[c for c in picked if c is not None])
    return _arrow_rows(batches, picked, names, name, columns)


def dataset_examples(table: pyarrow.Table, class_names: dict[str, list[str]], name: str,
                     columns: Columns) -> Iterator[Example]:
    """The examples of a saved dataset's split, as an Arrow table (``with_format("arrow")``)."""
    picked = _arrow_columns(table.schema, name, columns)
    batches = table.select([c for c in picked if c is not None]).to_batches(max_chunksize=ARROW_BATCH)
    return _arrow_rows(batches, picked, class_names, name, columns)


def _class_label_names(raw: bytes | None) -> dict[str, list[str]]:
    """A ``ClassLabel`` feature's names per column, from the schema metadata ``datasets`` writes."""
    try:
        features = json.loads(raw or b"{}").get("info", {}).get("features", {})
        return {col: list(f["names"]) for col, f in features.items()
                if isinstance(f, dict) and f.get("_type") == "ClassLabel" and "names" in f}
    except (ValueError, AttributeError, TypeError):
        return {}


def _arrow_columns(schema: pyarrow.Schema, name: str, columns: Columns) -> list[str | None]:
    """The schema's names for text, pair and label (None: not read); a DataError for a missing or wrong one."""
    import pyarrow.types as pt

    lowered = {field.name.lower(): field for field in schema}
    picked: list[str | None] = []
    for wanted, option, required in ((columns.text, "--text-column", True), (columns.pair, "--text-pair-column", True),
                                     (columns.label, "--label-column", columns.label_required)):
        field = lowered.get(wanted.lower()) if wanted else None
        if wanted and field is None and required:
            raise DataError(f"{name}: no column {wanted!r} (columns: {', '.join(repr(f.name) for f in schema)}); "
                            f"pass {option}")
        picked.append(field.name if field is not None else None)
        if field is None:
            continue
        kind = field.type.value_type if pt.is_dictionary(field.type) else field.type
        if pt.is_string(kind) or pt.is_large_string(kind) or pt.is_null(kind):
            continue
        if option == "--label-column" and (pt.is_integer(kind) or pt.is_boolean(kind)):
            continue
        holds = "labels: names or whole numbers" if option == "--label-column" else "text"
        raise DataError(f"{name}: column {field.name!r} holds {kind}, not {holds}")
    return picked


def _arrow_rows(batches: Iterable[Any], picked: list[str | None], class_names: dict[str, list[str]], name: str,
                columns: Columns) -> Iterator[Example]:
    text_col, pair_col, label_col = picked
    assert text_col is not None  # the text column is required: _arrow_columns raised without it
    names = class_names.get(label_col or "")
    number = 0
    for batch in batches:
        values = {col: batch.column(col).to_pylist() for col in picked if col is not None}
        texts = values[text_col]
        pairs = values[pair_col] if pair_col else [None] * len(texts)
        labels = values[label_col] if label_col else [None] * len(texts)
        for text, pair, label in zip(texts, pairs, labels):
            at = where(name, "parquet", number)
            if names is not None and isinstance(label, int) and 0 <= label < len(names):
                label = names[label]
            yield Example(number, checked_text(text, at, "text", text_col),
                          checked_text(pair, at, "text-pair", pair_col) if pair_col else None,
                          checked_label(label, at, label_col) if label_col else None)
            number += 1
