"""Read and validate the three TSV splits, build the label map, tokenise once.

The format is plain TSV with no quoting: a quote character inside a sentence is text. Every problem is
reported as ``file:line: what is wrong`` before any model is loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import SPLITS, DataSpec
from .errors import DataError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class RawSplit:
    """One split as read from disk: parallel lists, one entry per example, in file order."""

    path: Path
    texts: tuple[str, ...]
    pairs: tuple[str, ...] | None
    labels: tuple[str, ...]
    line_numbers: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Corpus:
    """The three validated splits and the label set (sorted, from train)."""

    train: RawSplit
    dev: RawSplit
    test: RawSplit
    label_names: tuple[str, ...]
    fingerprint: str

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


def label_sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order (``2`` before ``10``), then other names alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def read_corpus(spec: DataSpec) -> Corpus:
    """Read and validate train, dev and test; raise DataError on the first problem."""
    if not spec.data_dir.exists():
        raise DataError(f"{spec.data_dir}: data folder not found (it must hold train.txt, dev.txt, test.txt)")
    if not spec.data_dir.is_dir():
        raise DataError(f"{spec.data_dir}: is a file, not a folder holding train.txt, dev.txt, test.txt")
    digest = hashlib.sha256()
    splits: dict[str, RawSplit] = {}
    for name in SPLITS:
        raw_bytes = _read_bytes(spec.split_path(name))
        digest.update(name.encode() + b"\0" + hashlib.sha256(raw_bytes).digest())
        splits[name] = parse_split(spec.split_path(name), raw_bytes, spec)
    label_names = tuple(sorted(set(splits["train"].labels), key=label_sort_key))
    train_path = splits["train"].path
    if len(label_names) < 2:
        raise DataError(
            f"{train_path}: every example has label {label_names[0]!r}; a classifier needs at least two classes"
        )
    known = set(label_names)
    for name in ("dev", "test"):
        split = splits[name]
        for label, line in zip(split.labels, split.line_numbers):
            if label not in known:
                raise DataError(
                    f"{split.path}:{line}: label {label!r} does not occur in {train_path} "
                    f"(train labels: {', '.join(label_names)})"
                )
    return Corpus(splits["train"], splits["dev"], splits["test"], label_names, digest.hexdigest())


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found (the data folder needs train.txt, dev.txt and test.txt)")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a TSV file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: byte 0x{raw[exc.start]:02x} is not valid UTF-8; save the file as UTF-8"
        ) from None


def find_column(path: Path, header: list[str], wanted: str, option: str) -> int:
    """The index of column ``wanted`` (any case) in ``header``; a DataError naming ``option`` when it is not there."""
    lowered = [h.strip().lower() for h in header]
    if wanted.lower() in lowered:
        return lowered.index(wanted.lower())
    raise DataError(
        f"{path}:1: no column {wanted!r} in the header (columns: {', '.join(repr(h) for h in header)}); "
        f"the first line must be a header row naming the columns, or pass {option}"
    )


def parse_split(path: Path, raw: bytes, spec: DataSpec) -> RawSplit:
    """Parse one TSV split. Blank lines are skipped; CRLF and a UTF-8 BOM are accepted."""
    lines = _decode(path, raw).split("\n")
    rows = [(n, line.rstrip("\r")) for n, line in enumerate(lines, start=1)]
    rows = [(n, line) for n, line in rows if line.strip()]
    if not rows:
        raise DataError(f"{path}: file is empty; expected a header row and one example per line")
    header_text = rows[0][1]
    header = header_text.split("\t")
    text_idx = find_column(path, header, spec.text_column, "--text-column")
    label_idx = find_column(path, header, spec.label_column, "--label-column")
    pair_idx = None
    if spec.text_pair_column is not None:
        pair_idx = find_column(path, header, spec.text_pair_column, "--text-pair-column")
    if len(rows) == 1:
        raise DataError(f"{path}: has a header row but no examples")
    texts, pairs, labels, numbers = [], [], [], []
    for n, line in rows[1:]:
        fields = row_fields(path, n, line, header)
        texts.append(required_field(path, n, fields, header, text_idx, "text"))
        labels.append(required_field(path, n, fields, header, label_idx, "label"))
        numbers.append(n)
        if pair_idx is not None:
            pairs.append(required_field(path, n, fields, header, pair_idx, "text-pair"))
    return RawSplit(
        path, tuple(texts), tuple(pairs) if pair_idx is not None else None, tuple(labels), tuple(numbers)
    )


def row_fields(path: Path | str, number: int, line: str, header: list[str]) -> list[str]:
    """The tab-separated fields of data line ``number``; a DataError when there are not as many as the header's."""
    fields = line.split("\t")
    if len(fields) != len(header):
        raise DataError(
            f"{path}:{number}: {len(fields)} tab-separated fields, but the header has {len(header)}"
            + (" (a tab inside the text?)" if len(fields) > len(header) else "")
        )
    return fields


def required_field(path: Path | str, number: int, fields: list[str], header: list[str], index: int, what: str) -> str:
    """Field ``index`` stripped; a DataError naming the ``what`` column when it is empty."""
    value = fields[index].strip()
    if not value:
        raise DataError(f"{path}:{number}: the {what} column {header[index]!r} is empty")
    return value


def encode_split(split: RawSplit, tokenizer: PreTrainedTokenizerBase, label2id: dict[str, int],
                 max_length: int) -> datasets.Dataset:
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
    columns["labels"] = [label2id[label] for label in split.labels]
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return datasets.Dataset.from_dict(columns)


def encode_corpus(corpus: Corpus, tokenizer: PreTrainedTokenizerBase, max_length: int) -> EncodedSplits:
    label2id = corpus.label2id
    return EncodedSplits(
        *(encode_split(corpus.split(name), tokenizer, label2id, max_length) for name in SPLITS)
    )
