"""Read and validate the three splits, build the label map, tokenise once.

The splits are files of one format in the data folder (``data.split_files`` finds them; ``data.text_formats`` and
``data.arrow_formats`` parse each) or a
saved ``DatasetDict``. Every problem is reported as ``file:line: what is wrong`` (``file: row N`` for Parquet
and saved datasets) before any model is loaded.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_seqclf.data.labels import label_sort_key
from optuna_seqclf.data.records import Columns, Example, Label, where
from optuna_seqclf.data.split_files import SplitFile, find_split_files, is_saved_dataset, read_saved_dataset
from optuna_seqclf.data.text_formats import read_examples
from optuna_seqclf.errors import ConfigError, DataError
from optuna_seqclf.settings import SPLITS, DataSpec

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class RawSplit:
    """One split as read from disk: parallel lists, one entry per example, in file order."""

    path: Path
    fmt: str  # tsv, csv, jsonl, parquet or arrow (a saved dataset's split)
    texts: tuple[str, ...]
    pairs: tuple[str, ...] | None
    labels: tuple[Label, ...]  # a name, a tuple of names (multi-label) or a number (regression): ``data.labels``
    numbers: tuple[int, ...]  # each example's line (row, for parquet and arrow), for error messages

    @classmethod
    def of(cls, path: Path, fmt: str, examples: Iterable[Example]) -> RawSplit:
        rows = list(examples)
        has_pairs = bool(rows) and rows[0].pair is not None
        # the readers give every row a pair when the file has a pair column, and a label in a split read with
        # labels: the tuples hold strings, not None
        return cls(path, fmt, tuple(e.text for e in rows),
                   tuple(e.pair for e in rows) if has_pairs else None,  # type: ignore[misc]
                   tuple(e.label for e in rows), tuple(e.number for e in rows))  # type: ignore[misc]

    def where(self, index: int) -> str:
        """``file:line`` (or ``file: row N``) of example ``index``."""
        return where(str(self.path), self.fmt, self.numbers[index])

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Corpus:
    """The three validated splits and the label set (sorted, from train); for regression the one output,
    named after the label column."""

    train: RawSplit
    dev: RawSplit
    test: RawSplit
    label_names: tuple[str, ...]
    fingerprint: str
    task: str = "single-label"

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    def split(self, name: str) -> RawSplit:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]


@dataclass(frozen=True)
class EncodedSplits:
    """Tokenised splits (no padding; ``length`` column for length-grouped batches)."""

    train: datasets.Dataset
    dev: datasets.Dataset
    test: datasets.Dataset


__all__ = ["Corpus", "EncodedSplits", "RawSplit", "encode_corpus", "encode_split", "label_sort_key", "read_corpus"]


def read_corpus(spec: DataSpec, task: str = "single-label") -> Corpus:
    """Read and validate train, dev and test, with labels as ``task`` has them; raise DataError on the first
    problem."""
    if spec.label_columns is not None and task != "multi-label":
        raise ConfigError(f"--label-columns is the wide layout of --task multi-label, not of {task}", "label_columns")
    if not spec.data_dir.exists():
        raise DataError(f"{spec.data_dir}: data folder not found (it must hold train, dev and test files)")
    if not spec.data_dir.is_dir():
        raise DataError(f"{spec.data_dir}: is a file, not a folder holding train, dev and test files")
    columns = Columns(spec.text_column, spec.label_column, spec.text_pair_column, task=task,
                      label_separator=spec.label_separator, label_columns=spec.label_columns)
    if is_saved_dataset(spec.data_dir):
        saved, fingerprint = read_saved_dataset(spec.data_dir, columns)
        splits = {name: RawSplit.of(path, "arrow", examples) for name, (path, examples) in saved.items()}
    else:
        splits, fingerprint = _read_split_files(find_split_files(spec.data_dir), columns)
    return _checked_corpus(splits, fingerprint, task, spec.label_column)


def _read_split_files(files: dict[str, SplitFile], columns: Columns) -> tuple[dict[str, RawSplit], str]:
    digest = hashlib.sha256()
    splits: dict[str, RawSplit] = {}
    for name in SPLITS:
        found = files[name]
        raw_bytes = _read_bytes(found.path)
        # The study's data fingerprint: each split's role and the hash of its bytes (unchanged since 0.1, so a
        # study tuned on TSV files before resumes).
        digest.update(name.encode() + b"\0" + hashlib.sha256(raw_bytes).digest())
        examples = read_examples(io.BytesIO(raw_bytes), found.fmt, str(found.path), columns)
        splits[name] = RawSplit.of(found.path, found.fmt, examples)
    return splits, digest.hexdigest()


def _checked_corpus(splits: dict[str, RawSplit], fingerprint: str, task: str, label_column: str) -> Corpus:
    for split in splits.values():
        if not split.texts:
            raise DataError(f"{split.path}: " + ("has a header row but no examples" if split.fmt in ("tsv", "csv")
                                                 else "has no examples"))
    train = splits["train"]
    if task == "regression":
        if len(set(train.labels)) < 2:
            raise DataError(f"{train.path}: every example has score {train.labels[0]!r}; regression needs scores "
                            "that differ")
        return Corpus(train, splits["dev"], splits["test"], (label_column,), fingerprint, task)
    if task == "multi-label":
        label_names = tuple(sorted({n for names in train.labels for n in names}, key=label_sort_key))  # type: ignore[union-attr]
        if not label_names:
            raise DataError(f"{train.path}: no example has a label; multi-label needs at least one")
    else:
        label_names = tuple(sorted(set(train.labels), key=label_sort_key))
        _check_not_scores(train, label_names)
        if len(label_names) < 2:
            raise DataError(f"{train.path}: every example has label {label_names[0]!r}; a classifier needs at "
                            "least two classes")
    known = set(label_names)
    for name in ("dev", "test"):
        split = splits[name]
        for i, label in enumerate(split.labels):
            unknown = [n for n in (label if isinstance(label, tuple) else (label,)) if n not in known]
            if unknown:
                raise DataError(
                    f"{split.where(i)}: label {unknown[0]!r} does not occur in {train.path} "
                    f"(train labels: {', '.join(label_names)})"
                )
    return Corpus(train, splits["dev"], splits["test"], label_names, fingerprint, task)


def _check_not_scores(train: RawSplit, names: tuple[str, ...]) -> None:
    """Single-label labels that are all numbers, some not whole (``3.8``), are scores: say so."""
    try:
        values = [float(name) for name in names]
    except ValueError:
        return
    fractional = next((n for n, v in zip(names, values) if not v.is_integer()), None)
    if fractional is not None:
        i = train.labels.index(fractional)
        raise DataError(f"{train.where(i)}: label {fractional!r} is a number that is not whole, and every label in "
                        f"{train.path} is a number: these look like scores (did you mean --task regression?)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def encode_split(split: RawSplit, tokenizer: PreTrainedTokenizerBase, label2id: dict[str, int],
                 max_length: int, task: str = "single-label") -> datasets.Dataset:
    """Tokenise once, truncating to ``max_length`` and padding nothing (batches pad themselves)."""
    import datasets

    encoded = tokenizer(
        list(split.texts),
        list(split.pairs) if split.pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding=False,
    )
    columns = {key: encoded[key] for key in encoded}
    columns["labels"] = encode_labels(split.labels, task, label2id)
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return datasets.Dataset.from_dict(columns)


def encode_corpus(corpus: Corpus, tokenizer: PreTrainedTokenizerBase, max_length: int) -> EncodedSplits:
    label2id = corpus.label2id
    return EncodedSplits(
        *(encode_split(corpus.split(name), tokenizer, label2id, max_length, corpus.task) for name in SPLITS)
    )


def encode_labels(labels: tuple[Label, ...], task: str, label2id: dict[str, int]) -> list[Any]:
    """The ``labels`` column the model's loss takes: class ids (single-label), 0/1 vectors over ``label2id``'s
    labels as floats (multi-label: BCE), the scores (regression: MSE)."""
    if task == "regression":
        return [float(label) for label in labels]  # type: ignore[arg-type]
    if task == "multi-label":
        rows = []
        for names in labels:
            row = [0.0] * len(label2id)
            for name in names:  # type: ignore[union-attr]
                row[label2id[name]] = 1.0
            rows.append(row)
        return rows
    return [label2id[label] for label in labels]  # type: ignore[index]
