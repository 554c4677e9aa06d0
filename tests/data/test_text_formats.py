"""Reading one file of each line format: RFC 4180 CSV, JSON Lines, TSV; every problem names file and line."""

from __future__ import annotations

import io

import pytest

from optuna_seqclf.data.records import Columns, Example
from optuna_seqclf.data.text_formats import format_of, read_examples
from optuna_seqclf.errors import DataError

COLUMNS = Columns("sentence", "Label")


def _read(fmt: str, text: str | bytes, columns: Columns = COLUMNS, empty_ok: bool = False) -> list[Example]:
    raw = text.encode() if isinstance(text, str) else text
    return list(read_examples(io.BytesIO(raw), fmt, f"train.{fmt}", columns, empty_ok))


def _error(fmt: str, text: str | bytes, columns: Columns = COLUMNS) -> str:
    with pytest.raises(DataError) as info:
        _read(fmt, text, columns)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_csv_rfc4180_quoting() -> None:
    text = ('\ufeffSentence,label\r\n'
            '"a film, with a comma",1\r\n'
            '"she said ""wow""",0\r\n'
            '"two\r\nlines\n\nand a blank one",1\r\n'
            '\r\n'
            'plain text,0\r\n')
    rows = _read("csv", text)
    assert [r.text for r in rows] == ['a film, with a comma', 'she said "wow"', "two\r\nlines\n\nand a blank one",
                                      "plain text"]
    assert [r.label for r in rows] == ["1", "0", "1", "0"]
    assert [r.number for r in rows] == [2, 3, 4, 9]  # the line each record starts on


@pytest.mark.parametrize(("text", "message"), [
    ('sentence,Label\nok,1\n"never closed,0\nmore,1\n', "train.csv:3: a quoted field opened on this line is never "
                                                         "closed"),
    ('sentence,Label\nok,1\n"a"b,0\n', "train.csv:3: not valid CSV"),
    ('sentence,Label\nok,1\ntoo,many,0\n', "train.csv:3: 3 comma-separated fields, but the header has 2"),
    ('text,Label\nok,1\n', "train.csv:1: no column 'sentence' in the header (columns: 'text', 'Label')"),
    ('sentence,Label\n"",1\n', "train.csv:2: the text column 'sentence' is empty"),
    ('sentence,Label\nok,\n', "train.csv:2: the label column 'Label' is empty"),
    ("", "train.csv: file is empty"),
    (b"sentence,Label\ncaf\xe9,1\n", "train.csv:2: byte 0xe9 is not valid UTF-8"),
])
def test_bad_csv(text: str | bytes, message: str) -> None:
    assert message in _error("csv", text)


def test_jsonl_keys_any_case_and_label_types() -> None:
    text = ('{"Sentence": "a film", "label": 1}\n'
            '\n'
            '{"sentence": "  padded  ", "LABEL": "pos", "extra": [1, 2]}\n'
            '{"sentence": "flag", "Label": false}\n')
    rows = _read("jsonl", text)
    assert [(r.number, r.text, r.label) for r in rows] == [(1, "a film", "1"), (3, "padded", "pos"),
                                                          (4, "flag", "false")]


@pytest.mark.parametrize(("text", "message"), [
    ('{"sentence": "ok", "Label": 1}\n{"sentence": "bad", "Label": 0\n', "train.jsonl:2: not valid JSON"),
    ('{"sentence": "ok", "Label": 1}\n["bad", 0]\n', "train.jsonl:2: a JSON array where an object is expected"),
    ('{"sentence": "ok", "Label": 1}\n"bad"\n', "train.jsonl:2: a JSON string where an object is expected"),
    ('{"sentence": "ok", "Label": 1}\n{"text": "bad", "Label": 0}\n',
     "train.jsonl:2: no key 'sentence' in the object (keys: 'text', 'Label'); pass --text-column"),
    ('{"sentence": 3, "Label": 1}\n', "train.jsonl:1: the text column 'sentence' holds a number (3), not text"),
    ('{"sentence": ["a"], "Label": 1}\n', "holds a list, not text"),
    ('{"sentence": null, "Label": 1}\n', "train.jsonl:1: the text column 'sentence' is empty (null)"),
    ('{"sentence": "ok"}\n', "train.jsonl:1: no key 'Label' in the object (keys: 'sentence'); pass --label-column"),
    ('{"sentence": "ok", "Label": null}\n', "train.jsonl:1: the label column 'Label' is empty (null)"),
    ('{"sentence": "ok", "Label": 0.5}\n', "not a class name or whole number (did you mean --task regression?)"),
    ("\n\n", "train.jsonl: file is empty"),
])
def test_bad_jsonl(text: str, message: str) -> None:
    assert message in _error("jsonl", text)


def test_tsv_keeps_quotes_as_text() -> None:
    rows = _read("tsv", 'sentence\tLabel\n"quoted" text, with a comma\t1\n')
    assert rows[0].text == '"quoted" text, with a comma'


def test_text_pairs_and_optional_labels() -> None:
    columns = Columns("premise", "Label", "hypothesis", label_required=False)
    rows = _read("csv", "premise,hypothesis\nA man sleeps,A person rests\n", columns)
    assert rows == [Example(2, "A man sleeps", "A person rests", None)]
    rows = _read("jsonl", '{"premise": "a", "hypothesis": "b", "label": "yes"}\n', columns)
    assert rows[0].label == "yes"
    assert "no key 'Label'" in _error("jsonl", '{"premise": "a", "hypothesis": "b", "label": "yes"}\n'
                                               '{"premise": "a", "hypothesis": "b"}\n', columns)


def test_empty_ok_reads_nothing() -> None:
    assert _read("csv", "", empty_ok=True) == [] and _read("jsonl", "", empty_ok=True) == []


def test_format_of_extension() -> None:
    from pathlib import Path

    assert [format_of(Path(n)) for n in ("a.txt", "a.TSV", "a.csv", "a.jsonl", "a.parquet", "a.json")] == [
        "tsv", "tsv", "csv", "jsonl", "parquet", None]
