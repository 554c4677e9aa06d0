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

from optuna_seqclf.data.labels import label_of, wide_columns, wide_label
from optuna_seqclf.data.records import Columns, Example, checked_text, where
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
    """A ``ClassLabel`` feature's names per column (of a list of them too: ``Sequence(ClassLabel)``), from the
    schema metadata ``datasets`` writes."""
    try:
        features = json.loads(raw or b"{}").get("info", {}).get("features", {})
        out = {}
        for col, feature in features.items():
            if isinstance(feature, dict) and feature.get("_type") in ("Sequence", "List") \
                    and isinstance(feature.get("feature"), dict):
                feature = feature["feature"]
            if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and "names" in feature:
                out[col] = list(feature["names"])
        return out
    except (ValueError, AttributeError, TypeError):
        return {}


def _label_kinds(task: str) -> tuple[str, ...]:
    """The Arrow kinds a label column may hold under ``task``."""
    return {"single-label": ("string", "integer", "boolean"), "multi-label": ("string", "list"),
            "regression": ("string", "integer", "floating")}[task]


def _kind(arrow_type: Any) -> str:
    import pyarrow.types as pt

    kind = arrow_type.value_type if pt.is_dictionary(arrow_type) else arrow_type
    for name, test in (("string", lambda k: pt.is_string(k) or pt.is_large_string(k) or pt.is_null(k)),
                       ("integer", pt.is_integer), ("boolean", pt.is_boolean), ("floating", pt.is_floating),
                       ("list", lambda k: pt.is_list(k) or pt.is_large_list(k))):
        if test(kind):
            return name
    return "other"


def _arrow_columns(schema: pyarrow.Schema, name: str, columns: Columns) -> list[str | None]:
    """The schema's names for text, pair and label, then the wide layout's label columns (None: not read); a
    DataError for a missing column or one of the wrong kind."""
    lowered = {field.name.lower(): field for field in schema}
    wide = wide_columns([f.name for f in schema], columns, name) if columns.label_columns else []
    picked: list[str | None] = []
    for wanted, option, required in ((columns.text, "--text-column", True), (columns.pair, "--text-pair-column", True),
                                     (columns.label, "--label-column", columns.label_required and not wide)):
        field = lowered.get(wanted.lower()) if wanted and not (option == "--label-column" and wide) else None
        if wanted and field is None and required:
            raise DataError(f"{name}: no column {wanted!r} (columns: {', '.join(repr(f.name) for f in schema)}); "
                            f"pass {option}")
        picked.append(field.name if field is not None else None)
        if field is None:
            continue
        kind = _kind(field.type)
        allowed = _label_kinds(columns.task) if option == "--label-column" else ("string",)
        if kind not in allowed:
            raise DataError(f"{name}: column {field.name!r} holds {field.type}, not "
                            f"{_holds(option, columns.task, kind)}")
    for column in wide:
        field = schema.field(column)
        if _kind(field.type) not in ("integer", "boolean", "floating", "string"):
            raise DataError(f"{name}: label column {column!r} holds {field.type}; in the wide layout "
                            "(--label-columns) each label column holds 0 or 1")
    return picked + list(wide)


def _holds(option: str, task: str, kind: str) -> str:
    if option != "--label-column":
        return "text"
    hint = {("single-label", "floating"): " (did you mean --task regression?)",
            ("single-label", "list"): " (did you mean --task multi-label?)"}.get((task, kind), "")
    return {"single-label": "labels: names or whole numbers", "multi-label": "lists of label names",
            "regression": "numbers"}[task] + hint


def _arrow_rows(batches: Iterable[Any], picked: list[str | None], class_names: dict[str, list[str]], name: str,
                columns: Columns) -> Iterator[Example]:
    text_col, pair_col, label_col, *wide = picked
    assert text_col is not None  # the text column is required: _arrow_columns raised without it
    names = class_names.get(label_col or "")
    number = 0
    for batch in batches:
        values = {col: batch.column(col).to_pylist() for col in picked if col is not None}
        texts = values[text_col]
        pairs = values[pair_col] if pair_col else [None] * len(texts)
        labels = values[label_col] if label_col else [None] * len(texts)
        for row, (text, pair, label) in enumerate(zip(texts, pairs, labels)):
            at = where(name, "parquet", number)
            if names is not None:
                label = _named(label, names)
            yield Example(number, checked_text(text, at, "text", text_col),
                          checked_text(pair, at, "text-pair", pair_col) if pair_col else None,
                          wide_label(((c, values[c][row]) for c in wide if c is not None), at) if wide
                          else label_of(label, at, label_col, columns) if label_col else None)
            number += 1


def _named(label: Any, names: list[str]) -> Any:
    """A ``ClassLabel`` id (or a list of them) as its name; anything else as it is."""
    if isinstance(label, list):
        return [_named(item, names) for item in label]
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(names):
        return names[label]
    return label
