"""Find the train, dev and test splits of a data folder: three files of one format, or a saved ``DatasetDict``.

A split file is ``<split>.<ext>`` with ``ext`` one of ``txt``/``tsv`` (TSV), ``csv``, ``jsonl``, ``parquet``;
dev may be called ``validation`` (the ``datasets`` convention). Two files for one split, or splits of
different formats, are refused rather than guessed between.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from optuna_seqclf.data.arrow_formats import dataset_examples
from optuna_seqclf.data.records import Columns, Example
from optuna_seqclf.data.text_formats import format_of
from optuna_seqclf.errors import DataError
from optuna_seqclf.settings import SPLITS

SPLIT_NAMES: dict[str, tuple[str, ...]] = {"train": ("train",), "dev": ("dev", "validation"), "test": ("test",)}
SAVED_DATASET_MARK = "dataset_dict.json"  # written by DatasetDict.save_to_disk
EXPECTED = "train, dev (or validation) and test as .txt/.tsv, .csv, .jsonl or .parquet, or a saved DatasetDict"


@dataclass(frozen=True)
class SplitFile:
    path: Path
    fmt: str


def is_saved_dataset(folder: Path) -> bool:
    return (folder / SAVED_DATASET_MARK).is_file()


def find_split_files(folder: Path) -> dict[str, SplitFile]:
    """The file of each split (``train``, ``dev``, ``test``), all of one format; a DataError otherwise."""
    if (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file():
        raise DataError(f"{folder}: is a single saved Dataset; save a DatasetDict with train, validation and test "
                        "splits instead (DatasetDict(train=..., validation=..., test=...).save_to_disk(...))")
    found: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in sorted(folder.iterdir()):
        for split, names in SPLIT_NAMES.items():
            if path.stem in names and format_of(path) is not None:
                found[split].append(path)
    for split, paths in found.items():
        if len(paths) > 1:
            raise DataError(f"{folder}: {len(paths)} files for the {split} split: "
                            f"{' and '.join(p.name for p in paths)}; keep one")
    formats = {split: format_of(paths[0]) for split, paths in found.items() if paths}
    if len(set(formats.values())) > 1:
        listed = ", ".join(found[split][0].name for split in SPLITS if found[split])
        raise DataError(f"{folder}: the splits are of different formats ({listed}); use one format for all three")
    for split in SPLITS:
        if not found[split]:
            raise DataError(_missing(folder, split, next(iter(formats.values()), None), found))
        if found[split][0].is_dir():
            raise DataError(f"{found[split][0]}: is a folder, expected a file")
    # found holds files of known suffixes only, so no format here is None
    return {split: SplitFile(found[split][0], formats[split]) for split in SPLITS}  # type: ignore[arg-type]


def _missing(folder: Path, split: str, fmt: str | None, found: dict[str, list[Path]]) -> str:
    if fmt is None:
        return f"{folder}: no split files found (expected {EXPECTED})"
    suffix = next(p.suffix for paths in found.values() for p in paths)
    names = " or ".join(f"{name}{suffix}" for name in SPLIT_NAMES[split])
    return f"{folder / (SPLIT_NAMES[split][0] + suffix)}: file not found (the {split} split: {names})"


def read_saved_dataset(folder: Path, columns: Columns) -> tuple[dict[str, tuple[Path, Iterator[Example]]], str]:
    """Each split's folder and examples, and a fingerprint of the data files, from a saved ``DatasetDict``."""
    import datasets

    try:
        saved = datasets.load_from_disk(str(folder))
    except Exception as exc:  # any failure to load is reported as bad input, on one line
        raise DataError(f"{folder}: cannot be loaded as a saved dataset ({str(exc).splitlines()[0]})") from None
    if not isinstance(saved, datasets.DatasetDict):
        raise DataError(f"{folder}: holds one Dataset; save a DatasetDict with train, validation and test splits")
    digest = hashlib.sha256()
    out: dict[str, tuple[Path, Iterator[Example]]] = {}
    for split in SPLITS:
        present = [name for name in SPLIT_NAMES[split] if name in saved]
        if len(present) != 1:
            problem = "both dev and validation" if present else f"no {' or '.join(SPLIT_NAMES[split])} split"
            raise DataError(f"{folder}: the saved dataset has {problem} (its splits: {', '.join(saved)}); it needs "
                            "train, validation (or dev) and test")
        dataset = saved[present[0]]
        class_names = {col: list(inner.names) for col, feature in dataset.features.items()
                       # a list of ClassLabels (multi-label) names its classes on the inner feature
                       for inner in (getattr(feature, "feature", feature),)
                       if isinstance(inner, datasets.ClassLabel)}
        where_ = folder / present[0]
        digest.update(split.encode() + b"\0" + _files_digest(where_))
        out[split] = (where_, dataset_examples(dataset.with_format("arrow")[:], class_names, str(where_), columns))
    return out, digest.hexdigest()


def _files_digest(folder: Path) -> bytes:
    """A hash of a saved split's data (its Arrow files) and features, not of its cache metadata."""
    digest = hashlib.sha256()
    for path in [*sorted(folder.glob("*.arrow")), folder / "dataset_info.json"]:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.digest()
