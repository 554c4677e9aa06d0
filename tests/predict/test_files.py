"""Streaming predict: chunks keep the input order, lines are checked before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TEXTS
from optuna_seqclf import DataError
from optuna_seqclf.predict.files import InputSpec, predict_file, read_chunks
from optuna_seqclf.predict.predictor import Predictor


def test_chunks_give_the_same_rows_as_one_call(tmp_path: Path, classifiers: list[Path]) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\ufeff" + "".join(f"{t}\r\n\n" for t in TEXTS), encoding="utf-8")  # BOM, CRLF, blank lines
    predictor = Predictor(classifiers[:2], seeds=(1, 2))
    result = predict_file(predictor, InputSpec(source, "lines"), tmp_path / "out.jsonl", chunk_size=4,
                          probabilities=True)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = predictor.predict_proba(TEXTS)
    assert result.examples == len(TEXTS) == len(rows) and result.evaluation is None
    assert [r["index"] for r in rows] == list(range(len(TEXTS)))
    np.testing.assert_allclose([list(r["probabilities"].values()) for r in rows], expected, atol=2e-6)


def test_every_line_is_checked_with_its_number(tmp_path: Path) -> None:
    source = tmp_path / "in.tsv"
    source.write_text("Sentence\tlabel\ngood\t1\n\nbad\n", encoding="utf-8")
    spec = InputSpec(source)
    with pytest.raises(DataError, match=r"in.tsv:4: 1 tab-separated fields, but the header has 2"):
        list(read_chunks(source, spec, 10))
    source.write_bytes(b"sentence\tLabel\ngood\t1\nbad \xff\t0\n")
    with pytest.raises(DataError, match=r"in.tsv:3: byte 0xff is not valid UTF-8"):
        list(read_chunks(source, spec, 10))
    source.write_text("text\tLabel\ngood\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"in.tsv:1: no column 'sentence' in the header"):
        list(read_chunks(source, spec, 10))
    assert [c.texts for c in read_chunks(source, InputSpec(source, text_column="TEXT"), 10)] == [["good"]]
