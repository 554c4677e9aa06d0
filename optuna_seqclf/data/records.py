"""One example as read from any format, and the checks every value goes through (the same for every format).

``number`` is the line a record starts on (TSV, CSV, JSONL) or its row index from 0 (Parquet, saved datasets,
as pandas and ``datasets`` count); ``where`` turns it into the ``file:line`` or ``file: row N`` that starts
every error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from optuna_seqclf.errors import DataError

LINE_FORMATS = ("tsv", "csv", "jsonl")  # errors name a line; the others (parquet, arrow) a row
# A class name (single-label), a sorted tuple of names (multi-label) or a number (regression): ``data.labels``
Label = Union[str, tuple[str, ...], float]  # noqa: UP007  # a runtime alias


@dataclass(frozen=True)
class Columns:
    """Which columns to read, and what a label is (``task``). With ``label_required`` False the label is read
    when the file has it. ``label_columns``: multi-label's wide layout, one 0/1 column per label."""

    text: str = "sentence"
    label: str = "Label"
    pair: str | None = None
    label_required: bool = True
    task: str = "single-label"
    label_separator: str = ","
    label_columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Example:
    number: int
    text: str
    pair: str | None
    label: Label | None


def where(name: str, fmt: str, number: int) -> str:
    """``file:line`` for the line formats, ``file: row N`` (from 0) for Parquet and saved datasets."""
    return f"{name}:{number}" if fmt in LINE_FORMATS else f"{name}: row {number}"


def checked_text(value: Any, at: str, what: str, column: str | None) -> str:
    """``value`` stripped, when it is a non-empty string; a DataError naming ``at`` and the column otherwise."""
    if isinstance(value, str):
        text = value.strip()
        if text:
            return text
        raise DataError(f"{at}: the {what} column {column!r} is empty")
    if value is None:
        raise DataError(f"{at}: the {what} column {column!r} is empty (null)")
    raise DataError(f"{at}: the {what} column {column!r} holds {describe(value)}, not text")


def checked_label(value: Any, at: str, column: str | None) -> str:
    """A label as a string: a name, or a whole number (``1`` and ``"1"`` are the same label)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value.strip():
            return value.strip()
        raise DataError(f"{at}: the label column {column!r} is empty")
    if value is None:
        raise DataError(f"{at}: the label column {column!r} is empty (null)")
    raise DataError(f"{at}: the label column {column!r} holds {describe(value)}; a label is a name or a whole number")


def describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    return f"a number ({value!r})" if isinstance(value, (int, float)) else f"a {type(value).__name__}"
