"""Parquet files and saved datasets' splits: column types checked up front, ClassLabel names used, rows named."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_seqclf.data.arrow_formats import dataset_examples, parquet_examples
from optuna_seqclf.data.records import Columns
from optuna_seqclf.errors import DataError

COLUMNS = Columns("sentence", "Label")


def _parquet(path: Path, columns: dict[str, list[object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def _read(path: Path, columns: Columns = COLUMNS) -> list[tuple[int, str, str | None]]:
    return [(e.number, e.text, e.label) for e in parquet_examples(path, str(path), columns)]


def _error(path: Path, columns: Columns = COLUMNS) -> str:
    with pytest.raises(DataError) as info:
        _read(path, columns)
    return str(info.value)


def test_parquet_rows_any_case_integer_labels(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "train.parquet", {"SENTENCE": ["a film", " b "], "label": [1, 0], "x": [1.0, 2.0]})
    assert _read(path) == [(0, "a film", "1"), (1, "b", "0")]


def test_parquet_written_by_datasets_uses_class_label_names(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "Label": datasets.ClassLabel(names=["negative", "positive"])})
    datasets.Dataset.from_dict({"sentence": ["bad", "good"], "Label": [0, 1]}, features=features).to_parquet(
        str(tmp_path / "train.parquet"))
    assert _read(tmp_path / "train.parquet") == [(0, "bad", "negative"), (1, "good", "positive")]


def test_saved_split_uses_class_label_names() -> None:
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"), "Label": datasets.ClassLabel(names=["n", "p"])})
    ds = datasets.Dataset.from_dict({"sentence": ["x", "y", "z"], "Label": [1, 0, 1]}, features=features).select([2, 0])
    names = {"Label": list(features["Label"].names)}
    examples = dataset_examples(ds.with_format("arrow")[:], names, "d/train", COLUMNS)
    rows = [(e.number, e.text, e.label) for e in examples]
    assert rows == [(0, "z", "p"), (1, "x", "p")]


@pytest.mark.parametrize(("columns", "message"), [
    ({"sentence": ["ok", None], "Label": [1, 0]}, "train.parquet: row 1: the text column 'sentence' is empty (null)"),
    ({"sentence": ["ok", "  "], "Label": [1, 0]}, "train.parquet: row 1: the text column 'sentence' is empty"),
    ({"sentence": ["ok", "fine"], "Label": [1, None]},
     "train.parquet: row 1: the label column 'Label' is empty (null)"),
    ({"sentence": [1, 2], "Label": [1, 0]}, "train.parquet: column 'sentence' holds int64, not text"),
    ({"sentence": [["a"], ["b"]], "Label": [1, 0]}, "column 'sentence' holds list<"),
    ({"sentence": ["a", "b"], "Label": [0.5, 1.0]}, "column 'Label' holds double, not labels: names or whole numbers"),
    ({"text": ["a", "b"], "Label": [1, 0]}, "train.parquet: no column 'sentence' (columns: 'text', 'Label'); "
                                            "pass --text-column"),
])
def test_bad_parquet(tmp_path: Path, columns: dict[str, list[object]], message: str) -> None:
    assert message in _error(_parquet(tmp_path / "train.parquet", columns))


def test_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_text("sentence\tLabel\nok\t1\n")
    assert _error(path).startswith(f"{path}: not a Parquet file (")
