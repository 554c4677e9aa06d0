"""What one label is under each task, read from any format, checked the same way whatever the format.

- single-label: a class name (a whole number is a name too: ``1`` and ``"1"`` are the same class);
- multi-label: a tuple of names, sorted and without repeats, maybe empty: a JSON/Arrow list, a string of names
  joined by ``Columns.label_separator``, or, in the wide layout, the names of the 0/1 columns that hold 1;
- regression: a finite float.

A value that does not fit the task says what it looks like instead ("did you mean --task regression?").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from optuna_seqclf.data.records import Columns, Label, checked_label, describe
from optuna_seqclf.errors import DataError

__all__ = ["Label", "label_of", "label_set", "label_sort_key", "score", "wide_columns", "wide_label"]
WIDE_ALL = "*"  # --label-columns '*': every column but the text and the pair
_ONES = {"1", "1.0", "true"}
_ZEROS = {"0", "0.0", "false", ""}


def label_sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order (``2`` before ``10``), then other names alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def label_of(value: Any, at: str, column: str | None, columns: Columns) -> Label:
    """The label ``value`` (of the label column ``column``) is under ``columns.task``; a DataError naming ``at``."""
    if columns.task == "multi-label":
        return label_set(value, at, column, columns.label_separator)
    if columns.task == "regression":
        return score(value, at, column)
    if isinstance(value, (list, tuple)):
        raise DataError(f"{at}: the label column {column!r} holds a list; one label per example under "
                        "single-label (did you mean --task multi-label?)")
    if isinstance(value, float) and not value.is_integer():
        raise DataError(f"{at}: the label column {column!r} holds a number ({value!r}), not a class name or whole "
                        "number (did you mean --task regression?)")
    return checked_label(int(value) if isinstance(value, float) else value, at, column)


def label_set(value: Any, at: str, column: str | None, separator: str) -> tuple[str, ...]:
    """A multi-label example's names: a list of names (or whole numbers), or names joined by ``separator``;
    empty (no label) when the value is empty or null."""
    if value is None:
        return ()
    if isinstance(value, str):
        names: Iterable[str] = (name.strip() for name in value.split(separator))
    elif isinstance(value, (list, tuple)):
        names = (checked_label(v, at, column) for v in value)
    elif isinstance(value, (int, bool)):
        names = (checked_label(value, at, column),)
    else:
        raise DataError(f"{at}: the label column {column!r} holds {describe(value)}; a multi-label example's labels "
                        f"are a list of names, or names joined by {separator!r} (--label-separator)")
    return tuple(sorted({name for name in names if name}, key=label_sort_key))


def score(value: Any, at: str, column: str | None) -> float:
    """A regression example's finite number (a number, or text that is one)."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            raise DataError(f"{at}: the label column {column!r} holds {value.strip()!r}, not a number "
                            "(--task regression needs a number per example)") from None
    elif value is None or isinstance(value, str):
        raise DataError(f"{at}: the label column {column!r} is empty; --task regression needs a number per example")
    else:
        raise DataError(f"{at}: the label column {column!r} holds {describe(value)}, not a number "
                        "(--task regression)")
    if not math.isfinite(number):
        raise DataError(f"{at}: the label column {column!r} holds {number!r}; a score must be a finite number")
    return number


def wide_label(values: Iterable[tuple[str, Any]], at: str) -> tuple[str, ...]:
    """The wide layout's label set: the names of the (column, value) pairs whose value is 1 (0/1, true/false,
    "1.0"...); anything else is a DataError naming the column."""
    names = []
    for column, value in values:
        text = str(value).strip().lower() if value is not None else ""
        if isinstance(value, bool) or text in _ONES | _ZEROS:
            if value is True or text in _ONES:
                names.append(column)
            continue
        raise DataError(f"{at}: the label column {column!r} holds {value!r}; in the wide layout (--label-columns) "
                        "each label column holds 0 or 1")
    return tuple(sorted(names, key=label_sort_key))


def wide_columns(available: Iterable[str], columns: Columns, at: str) -> list[str]:
    """The wide layout's label columns among ``available`` (found in any case): the ones ``--label-columns``
    names, or with ``*`` every one but the text and the pair columns."""
    available = list(available)
    wanted = columns.label_columns or ()
    skip = {c.lower() for c in (columns.text, columns.pair) if c}
    if wanted == (WIDE_ALL,):
        picked = [c for c in available if c.lower() not in skip]
        if not picked:
            raise DataError(f"{at}: --label-columns '*': no column but the text ({', '.join(available)})")
        return picked
    lowered = {c.lower(): c for c in available}
    missing = [w for w in wanted if w.lower() not in lowered]
    if missing:
        raise DataError(f"{at}: no label column {missing[0]!r} (columns: {', '.join(repr(c) for c in available)}); "
                        "check --label-columns")
    return [lowered[w.lower()] for w in wanted]
