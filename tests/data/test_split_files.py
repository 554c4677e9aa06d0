"""Finding the splits of a data folder: one format per folder, dev or validation, saved DatasetDicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLE_DATA, convert_corpus
from optuna_seqclf.data.corpus import read_corpus
from optuna_seqclf.data.records import Columns
from optuna_seqclf.data.split_files import find_split_files, read_saved_dataset
from optuna_seqclf.errors import DataError
from optuna_seqclf.settings import DataSpec


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("x\n")
    return folder


def _error(folder: Path) -> str:
    with pytest.raises(DataError) as info:
        find_split_files(folder)
    return str(info.value)


def test_validation_is_dev_and_other_files_are_ignored(tmp_path: Path) -> None:
    folder = _touch(tmp_path, "train.csv", "validation.csv", "test.csv", "README.md", "labels.csv", "train.json")
    found = find_split_files(folder)
    assert {split: f.path.name for split, f in found.items()} == {"train": "train.csv", "dev": "validation.csv",
                                                                 "test": "test.csv"}
    assert {f.fmt for f in found.values()} == {"csv"}


def test_txt_and_tsv_are_one_format(tmp_path: Path) -> None:
    found = find_split_files(_touch(tmp_path, "train.tsv", "dev.txt", "test.tsv"))
    assert {f.fmt for f in found.values()} == {"tsv"}


@pytest.mark.parametrize(("names", "message"), [
    (("train.csv", "train.jsonl", "dev.csv", "test.csv"), "2 files for the train split: train.csv and train.jsonl"),
    (("train.csv", "dev.csv", "validation.csv", "test.csv"), "2 files for the dev split: dev.csv and validation.csv"),
    (("train.csv", "dev.jsonl", "test.csv"), "the splits are of different formats (train.csv, dev.jsonl, test.csv)"),
    (("train.csv", "dev.csv"), "test.csv: file not found (the test split: test.csv)"),
    (("train.parquet", "test.parquet"), "dev.parquet: file not found (the dev split: dev.parquet or "
                                        "validation.parquet)"),
    (("notes.txt",), "no split files found"),
])
def test_folder_problems(tmp_path: Path, names: tuple[str, ...], message: str) -> None:
    assert message in _error(_touch(tmp_path, *names))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "saved"])
def test_every_format_reads_as_the_tsv_does(tmp_path: Path, fmt: str) -> None:
    tsv = read_corpus(DataSpec(EXAMPLE_DATA))
    corpus = read_corpus(DataSpec(convert_corpus(EXAMPLE_DATA, tmp_path / fmt, fmt, dev_name="validation")))
    for split in ("train", "dev", "test"):
        assert corpus.split(split).texts == tsv.split(split).texts
        assert corpus.split(split).labels == tsv.split(split).labels
    assert corpus.label_names == tsv.label_names
    assert corpus.fingerprint != tsv.fingerprint  # the bytes differ, so does the fingerprint


def test_saved_dataset_fingerprint_follows_the_content(tmp_path: Path) -> None:
    import datasets

    def save(folder: Path, last: str) -> str:
        part = datasets.Dataset.from_dict({"sentence": ["a", "b", last], "Label": [0, 1, 1]})
        datasets.DatasetDict(train=part, validation=part, test=part).save_to_disk(str(folder))
        return read_corpus(DataSpec(folder)).fingerprint

    assert save(tmp_path / "one", "c") == save(tmp_path / "again", "c") != save(tmp_path / "changed", "d")


def test_saved_dataset_problems(tmp_path: Path) -> None:
    import datasets

    part = datasets.Dataset.from_dict({"sentence": ["a", "b"], "Label": [0, 1]})
    datasets.DatasetDict(train=part, validation=part).save_to_disk(str(tmp_path / "no-test"))
    with pytest.raises(DataError, match=r"no-test: the saved dataset has no test split \(its splits: train, "
                                        r"validation\)"):
        read_saved_dataset(tmp_path / "no-test", Columns())
    part.save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DataError, match="is a single saved Dataset"):
        read_corpus(DataSpec(tmp_path / "one"))
    bad = datasets.Dataset.from_dict({"sentence": ["a", None], "Label": [0, 1]})
    datasets.DatasetDict(train=part, dev=bad, test=part).save_to_disk(str(tmp_path / "null"))
    with pytest.raises(DataError, match=r"null/dev: row 1: the text column 'sentence' is empty \(null\)"):
        read_corpus(DataSpec(tmp_path / "null"))
