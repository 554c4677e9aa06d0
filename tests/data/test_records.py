"""The value checks every format shares: text must be a non-empty string, a label a name or a whole number."""

from __future__ import annotations

import pytest

from optuna_seqclf.data.records import checked_label, checked_text, where
from optuna_seqclf.errors import DataError


def test_where_names_a_line_or_a_row() -> None:
    assert where("train.csv", "csv", 7) == "train.csv:7"
    assert where("train.jsonl", "jsonl", 7) == "train.jsonl:7"
    assert where("train.parquet", "parquet", 7) == "train.parquet: row 7"
    assert where("data/train", "arrow", 0) == "data/train: row 0"


def test_text_is_stripped() -> None:
    assert checked_text("  a film \n", "f:2", "text", "sentence") == "a film"


@pytest.mark.parametrize(("value", "message"), [
    ("  ", "f:2: the text column 'sentence' is empty"),
    (None, "f:2: the text column 'sentence' is empty (null)"),
    (3, "f:2: the text column 'sentence' holds a number (3), not text"),
    (2.5, "holds a number (2.5), not text"),
    (["a", "b"], "holds a list, not text"),
    ({"a": 1}, "holds an object, not text"),
    (True, "holds a boolean (true), not text"),
])
def test_bad_text(value: object, message: str) -> None:
    with pytest.raises(DataError) as info:
        checked_text(value, "f:2", "text", "sentence")
    assert message in str(info.value)


def test_labels_are_names_or_whole_numbers() -> None:
    assert checked_label(" pos ", "f:2", "Label") == "pos"
    assert checked_label(1, "f:2", "Label") == checked_label("1", "f:2", "Label") == "1"
    assert checked_label(True, "f:2", "Label") == "true"


@pytest.mark.parametrize(("value", "message"), [
    ("", "f:2: the label column 'Label' is empty"),
    (None, "f:2: the label column 'Label' is empty (null)"),
    (0.5, "holds a number (0.5); a label is a name or a whole number"),
    ([1], "holds a list"),
])
def test_bad_label(value: object, message: str) -> None:
    with pytest.raises(DataError) as info:
        checked_label(value, "f:2", "Label")
    assert message in str(info.value)
