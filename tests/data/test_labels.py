"""Labels under each task, in every layout we read: multi-label lists, joined names and the wide 0/1 layout;
regression scores; and the errors that say what the data looks like when it does not fit the task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optuna_seqclf.data.corpus import encode_corpus, read_corpus
from optuna_seqclf.data.labels import label_set, score, wide_label
from optuna_seqclf.errors import ConfigError, DataError
from optuna_seqclf.settings import DataSpec


def _write(folder: Path, suffix: str, train: str, dev: str | None = None, test: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("dev", dev or train), ("test", test or train)):
        (folder / f"{name}{suffix}").write_text(text, encoding="utf-8")
    return folder


def _jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


ROWS = [{"text": "glad and proud", "labels": ["joy", "pride"]}, {"text": "so angry", "labels": ["anger"]},
        {"text": "just a fact", "labels": []}, {"text": "happy", "labels": ["joy", "joy"]}]


def test_multi_label_jsonl_lists_and_multi_hot(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    folder = _write(tmp_path, ".jsonl", _jsonl(ROWS))
    corpus = read_corpus(DataSpec(folder, "text", "labels"), "multi-label")
    assert corpus.label_names == ("anger", "joy", "pride")
    assert corpus.train.labels == (("joy", "pride"), ("anger",), (), ("joy",))  # repeats once, empty allowed
    encoded = encode_corpus(corpus, AutoTokenizer.from_pretrained(tiny_model), 32)
    assert encoded.train["labels"] == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_multi_label_joined_names(tmp_path: Path, fmt: str) -> None:
    sep = "\t" if fmt == "tsv" else ","
    quote = "" if fmt == "tsv" else '"'
    text = f"sentence{sep}Label\nglad{sep}{quote}joy, pride{quote}\nangry{sep}anger\nnothing{sep}\n"
    corpus = read_corpus(DataSpec(_write(tmp_path, f".{fmt}", text)), "multi-label")
    assert corpus.train.labels == (("joy", "pride"), ("anger",), ())
    piped = read_corpus(DataSpec(_write(tmp_path / "p", f".{fmt}", text.replace(", ", "|")), label_separator="|"),
                        "multi-label")
    assert piped.train.labels[0] == ("joy", "pride")


def test_multi_label_wide_layout(tmp_path: Path) -> None:
    text = "text,anger,joy,extra\nglad,0,1,1\nangry,1,0,0\nnone,0,0,0\n"
    named = read_corpus(DataSpec(_write(tmp_path, ".csv", text), "text", label_columns=("anger", "JOY")),
                        "multi-label")
    assert named.label_names == ("anger", "joy") and named.train.labels == (("joy",), ("anger",), ())
    every = read_corpus(DataSpec(tmp_path, "text", label_columns=("*",)), "multi-label")
    assert every.label_names == ("anger", "extra", "joy")
    rows = [{"text": "glad", "anger": 0, "joy": True}, {"text": "angry", "anger": 1, "joy": False}]
    jsonl = read_corpus(DataSpec(_write(tmp_path / "j", ".jsonl", _jsonl(rows)), "text", label_columns=("*",)),
                        "multi-label")
    assert jsonl.train.labels == (("joy",), ("anger",))


def test_multi_label_parquet_and_saved_dataset_class_labels(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=["anger", "joy", "pride"]))})
    split = datasets.Dataset.from_dict({"text": ["glad", "angry", "meh"], "labels": [[1, 2], [0], []]},
                                       features=features)
    for name in ("train", "dev", "test"):
        split.to_parquet(str(tmp_path / "pq" / f"{name}.parquet"))
    expected = (("joy", "pride"), ("anger",), ())
    assert read_corpus(DataSpec(tmp_path / "pq", "text", "labels"), "multi-label").train.labels == expected
    datasets.DatasetDict(train=split, validation=split, test=split).save_to_disk(str(tmp_path / "saved"))
    assert read_corpus(DataSpec(tmp_path / "saved", "text", "labels"), "multi-label").train.labels == expected


def test_regression_scores_and_pairs(tmp_path: Path) -> None:
    text = "s1\ts2\tscore\na plane\tan air plane\t5.000\na man\ta dog\t0.4\nx\ty\t2\n"
    corpus = read_corpus(DataSpec(_write(tmp_path, ".tsv", text), "s1", "score", "s2"), "regression")
    assert corpus.train.labels == (5.0, 0.4, 2.0) and corpus.label_names == ("score",)
    assert corpus.train.pairs == ("an air plane", "a dog", "y")


@pytest.mark.parametrize(("task", "train", "message"), [
    ("single-label", "sentence\tLabel\na\t0.5\nb\t1\n", r"train\.txt:2: label '0\.5'.*did you mean --task regression"),
    ("regression", "sentence\tLabel\na\t0.5\nb\tgood\n", r"train\.txt:3: .*'good', not a number"),
    ("regression", "sentence\tLabel\na\t1\nb\t1.0\n", "regression needs scores that differ"),
    ("regression", "sentence\tLabel\na\tnan\nb\t1\n", "train.txt:2: .*finite"),
    ("multi-label", "sentence\tLabel\na\t\nb\t\n", "no example has a label"),
])
def test_labels_that_do_not_fit_the_task(tmp_path: Path, task: str, train: str, message: str) -> None:
    (tmp_path / "d").mkdir()
    for name in ("train", "dev", "test"):
        (tmp_path / "d" / f"{name}.txt").write_text(train, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_corpus(DataSpec(tmp_path / "d"), task)


def test_bad_inputs_name_the_line(tmp_path: Path) -> None:
    rows = [{"text": "a", "labels": ["joy"]}, {"text": "b", "labels": ["anger"]}]
    folder = _write(tmp_path, ".jsonl", _jsonl(rows), dev=_jsonl([{"text": "c", "labels": ["joy", "fear"]}]))
    with pytest.raises(DataError, match=r"dev\.jsonl:1: label 'fear' does not occur in .*train\.jsonl"):
        read_corpus(DataSpec(folder, "text", "labels"), "multi-label")
    with pytest.raises(DataError, match=r"train\.jsonl:1: .*holds a list.*did you mean --task multi-label"):
        read_corpus(DataSpec(folder, "text", "labels"))
    wide = _write(tmp_path / "w", ".csv", "text,anger,joy\nglad,0,1\nangry,2,0\n")
    with pytest.raises(DataError, match=r"train\.csv:3: the label column 'anger' holds '2'.*0 or 1"):
        read_corpus(DataSpec(wide, "text", label_columns=("*",)), "multi-label")
    with pytest.raises(DataError, match=r"no label column 'fear'"):
        read_corpus(DataSpec(wide, "text", label_columns=("fear",)), "multi-label")
    with pytest.raises(ConfigError, match="--label-columns is the wide layout of --task multi-label"):
        read_corpus(DataSpec(wide, "text", label_columns=("*",)), "single-label")


def test_value_rules() -> None:
    assert label_set("b, a,,a", "f:1", "L", ",") == ("a", "b")
    assert label_set([2, 10, "x"], "f:1", "L", ",") == ("2", "10", "x")  # numbers in numeric order
    assert label_set(None, "f:1", "L", ",") == ()
    assert score(" 3.5 ", "f:1", "L") == 3.5 and score(2, "f:1", "L") == 2.0
    with pytest.raises(DataError, match="f:1: the label column 'L' holds a boolean"):
        score(True, "f:1", "L")
    assert wide_label([("a", "1.0"), ("b", 0), ("c", "true")], "f:1") == ("a", "c")
