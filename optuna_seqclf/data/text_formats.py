"""Read the examples of one file, whatever its format, checking every one of them.

Formats: TSV (``.txt``/``.tsv``, the reference toolkit's: a header row, tab-separated, no quoting), CSV
(``.csv``, RFC 4180: quoted fields may hold commas, doubled quotes and newlines), JSON Lines (``.jsonl``, one
object per line), Parquet (``.parquet``) and the Arrow table of a split saved by ``DatasetDict.save_to_disk``.

Every reader yields checked ``data.records.Example``s in file order. Columns (keys) are found in any case; a label
may be a name or a whole number (``data.arrow_formats`` reads Parquet and saved datasets).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from optuna_seqclf.data.arrow_formats import parquet_examples
from optuna_seqclf.data.labels import label_of, wide_columns, wide_label
from optuna_seqclf.data.records import Columns, Example, Label, checked_text
from optuna_seqclf.errors import DataError

FORMAT_OF_SUFFIX = {".txt": "tsv", ".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def format_of(path: Path) -> str | None:
    return FORMAT_OF_SUFFIX.get(path.suffix.lower())


def read_examples(fh: BinaryIO, fmt: str, name: str, columns: Columns, empty_ok: bool = False) -> Iterator[Example]:
    """The checked examples of an open file of format ``fmt`` (``tsv``, ``csv``, ``jsonl`` or ``parquet``).

    An empty file (not even a header row) is a DataError unless ``empty_ok``.
    """
    if fmt == "parquet":
        return parquet_examples(fh, name, columns)
    lines = numbered_lines(fh, name)
    reader = {"jsonl": _jsonl_examples, "csv": _csv_examples, "tsv": _tsv_examples}[fmt]
    return reader(lines, name, columns, empty_ok)


def numbered_lines(fh: Iterable[bytes], name: str) -> Iterator[tuple[int, str]]:
    """(line number, the line decoded, its line ending kept); UTF-8, a BOM allowed on line 1."""
    for number, raw in enumerate(fh, start=1):
        try:
            yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{name}:{number}: byte 0x{raw[exc.start]:02x} is not valid UTF-8; "
                            "save the file as UTF-8") from None


# --- header formats: TSV and CSV ---------------------------------------------------------------

class _Header:
    """The column positions of a header row, found in any case."""

    def __init__(self, name: str, where_: str, header: list[str], columns: Columns, kind: str) -> None:
        self.name, self.header, self.kind, self.columns = name, header, kind, columns
        lowered = [h.strip().lower() for h in header]

        def find(wanted: str, option: str) -> int:
            if wanted.lower() in lowered:
                return lowered.index(wanted.lower())
            raise DataError(f"{where_}: no column {wanted!r} in the header (columns: "
                            f"{', '.join(repr(h) for h in header)}); the first line must be a header row naming "
                            f"the columns, or pass {option}")

        self.text = find(columns.text, "--text-column")
        self.pair = find(columns.pair, "--text-pair-column") if columns.pair else None
        has_label = columns.label.lower() in lowered
        self.wide = [header.index(c) for c in wide_columns(header, columns, where_)] if columns.label_columns else []
        self.label = find(columns.label, "--label-column") \
            if not self.wide and (columns.label_required or has_label) else None

    def example(self, number: int, fields: list[str]) -> Example:
        if len(fields) != len(self.header):
            raise DataError(f"{self.name}:{number}: {len(fields)} {self.kind} fields, but the header has "
                            f"{len(self.header)}" + (" (a tab inside the text?)" if self.kind == "tab-separated"
                                                     and len(fields) > len(self.header) else ""))
        at = f"{self.name}:{number}"
        pair = checked_text(fields[self.pair], at, "text-pair", self.header[self.pair]) \
            if self.pair is not None else None
        label: Label | None = None
        if self.wide:
            label = wide_label(((self.header[i], fields[i]) for i in self.wide), at)
        elif self.label is not None:
            label = label_of(fields[self.label], at, self.header[self.label], self.columns)
        return Example(number, checked_text(fields[self.text], at, "text", self.header[self.text]), pair, label)


def _tsv_examples(lines: Iterator[tuple[int, str]], name: str, columns: Columns, empty_ok: bool) -> Iterator[Example]:
    header: _Header | None = None
    for number, line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if header is None:
            header = _Header(name, f"{name}:{number}", line.split("\t"), columns, "tab-separated")
        else:
            yield header.example(number, line.split("\t"))
    if header is None and not empty_ok:
        raise DataError(f"{name}: file is empty; expected a header row and one example per line")


def _csv_examples(lines: Iterator[tuple[int, str]], name: str, columns: Columns, empty_ok: bool) -> Iterator[Example]:
    # csv counts the lines it has pulled: a record starts one line after the previous record ended.
    reader = csv.reader((line for _, line in lines), strict=True)
    header: _Header | None = None
    start = 1
    while True:
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            raise DataError(_csv_problem(name, start, reader.line_num, str(exc))) from None
        if fields is None:
            break
        if fields and any(f.strip() for f in fields):
            if header is None:
                header = _Header(name, f"{name}:{start}", fields, columns, "comma-separated")
            else:
                yield header.example(start, fields)
        start = reader.line_num + 1
    if header is None and not empty_ok:
        raise DataError(f"{name}: file is empty; expected a header row and one example per line")


def _csv_problem(name: str, start: int, line: int, message: str) -> str:
    if "unexpected end of data" in message or "EOF" in message:
        return (f"{name}:{start}: a quoted field opened on this line is never closed "
                "(an unterminated quote: close it, or double a quote inside the text)")
    if "field larger than field limit" in message:
        return f"{name}:{start}: a field is longer than Python's csv limit ({csv.field_size_limit():,} characters)"
    return f"{name}:{line}: not valid CSV ({message}; a quote inside a quoted field must be doubled)"


# --- JSON Lines ------------------------------------------------------------------------------

def _jsonl_examples(lines: Iterator[tuple[int, str]], name: str, columns: Columns, empty_ok: bool) -> Iterator[Example]:
    use_label: bool | None = True if columns.label_required else None  # None: decided by the first object
    seen = False
    for number, line in lines:
        if not line.strip():
            continue
        at = f"{name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{at}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{at}: a JSON {_json_type(record)} where an object is expected (one object per line, "
                            f"e.g. {{\"{columns.text}\": \"...\", \"{columns.label}\": \"...\"}})")
        if use_label is None:
            use_label = columns.label_columns is not None or _key(record, columns.label) is not None
        seen = True
        yield Example(number, checked_text(_value(record, columns.text, at, "--text-column"), at, "text", columns.text),
                      checked_text(_value(record, columns.pair, at, "--text-pair-column"), at, "text-pair",
                                   columns.pair) if columns.pair else None,
                      _jsonl_label(record, at, columns) if use_label else None)
    if not seen and not empty_ok:
        raise DataError(f"{name}: file is empty; expected one JSON object per line")


def _jsonl_label(record: dict[str, Any], at: str, columns: Columns) -> Label:
    if columns.label_columns:
        return wide_label(((key, record[key]) for key in wide_columns(record, columns, at)), at)
    key = _key(record, columns.label)
    return label_of(_value(record, columns.label, at, "--label-column"), at, key, columns)


def _key(record: dict[str, Any], wanted: str) -> str | None:
    if wanted in record:
        return wanted
    lowered = wanted.lower()
    return next((k for k in record if k.lower() == lowered), None)  # JSON keys are strings


def _value(record: dict[str, Any], wanted: str, at: str, option: str) -> Any:
    key = _key(record, wanted)
    if key is None:
        keys = ", ".join(repr(k) for k in record) or "none"
        raise DataError(f"{at}: no key {wanted!r} in the object (keys: {keys}); pass {option}")
    return record[key]


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
