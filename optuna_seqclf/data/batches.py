"""An epoch's batches of pre-tokenised examples, padded per batch. No model, no Trainer.

By default sentences of similar length go in the same batch (shuffled mega-batches of 50 batches, each
sorted by length: the HF Trainer's ``group_by_length`` recipe), so a batch is padded to its own longest
sentence and little compute is spent on padding, and the batches then run in a random order: run in
their sorted order, long to short within each group, they cost test F1 and sometimes diverged
(``bench/quality.py``, docs/speed.md). Every example is visited exactly once per epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import datasets
    import torch

MEGABATCH = 50  # batches per sorted group
PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0}  # input_ids pad with the tokenizer's pad id


@dataclass(frozen=True)
class TensorSplit:
    """A tokenised split as flat token arrays: row ``i`` of a column is ``values[offsets[i]:offsets[i + 1]]``.

    The arrays are views of the dataset's Arrow buffers (no copy, nothing per row), so building one per
    trial or per evaluation costs microseconds and the corpus stays in memory once.
    """

    columns: dict[str, np.ndarray]  # column name -> every row's tokens, end to end
    offsets: dict[str, np.ndarray]  # column name -> len(split) + 1 positions into its values
    labels: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset) -> TensorSplit:
        import pyarrow as pa

        table = dataset.with_format("arrow")[:]  # a zero-copy slice unless rows were selected or shuffled
        columns: dict[str, np.ndarray] = {}
        offsets: dict[str, np.ndarray] = {}
        for name in table.column_names:
            if name in ("labels", "length"):
                continue
            chunks = table.column(name).chunks
            array = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)
            columns[name] = array.values.to_numpy(zero_copy_only=False)
            offsets[name] = array.offsets.to_numpy(zero_copy_only=False)
        return cls(columns, offsets, _labels(table.column("labels")), table.column("length").to_numpy())

    @classmethod
    def from_encoding(cls, encoded: Mapping[str, Sequence[Sequence[int]]],
                      labels: np.ndarray | None = None) -> TensorSplit:
        """From a fast tokenizer's output (lists of token ids per row, no padding); labels 0 when not given."""
        columns: dict[str, np.ndarray] = {}
        offsets: dict[str, np.ndarray] = {}
        for name, rows in encoded.items():
            sizes = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
            offsets[name] = np.concatenate(([0], np.cumsum(sizes)))
            columns[name] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64,
                                        count=int(offsets[name][-1]))
        lengths = np.diff(offsets["input_ids"])
        return cls(columns, offsets, labels if labels is not None else np.zeros(len(lengths), np.int64), lengths)

    def __len__(self) -> int:
        return len(self.labels)


def _labels(column: Any) -> np.ndarray:
    """The labels column as an array: class ids, scores, or (multi-label) one row of 0/1 floats per example."""
    import pyarrow as pa
    import pyarrow.types as pt

    if not pt.is_list(column.type):
        return column.to_numpy()
    flat = (column.chunks[0] if len(column.chunks) == 1 else pa.concat_arrays(column.chunks)).flatten()
    return flat.to_numpy(zero_copy_only=False).reshape(len(column), -1)


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, batching: str) -> list[np.ndarray]:
    """One epoch of batches (index arrays) as ``batching`` cuts it; every row once, the longest batch first.

    ``random``: a fresh permutation cut into batches (the HF Trainer's default). ``grouped``: shuffled
    mega-batches of 50 batches, each sorted by length (``group_by_length``): less padding, but the batches
    of a group run from long to short. ``grouped-shuffled``: the same batches in a random order.
    The batch holding the longest example comes first, so an out-of-memory error shows at once.
    """
    if batching == "random":
        perm = rng.permutation(len(lengths))
        return _longest_first([perm[i:i + batch_size] for i in range(0, len(perm), batch_size)], lengths)
    batches = length_grouped_batches(lengths, batch_size, rng)  # the longest batch first already
    if batching == "grouped-shuffled" and len(batches) > 2:
        batches = [batches[0], *(batches[1 + i] for i in rng.permutation(len(batches) - 1))]
    return batches


def _longest_first(batches: list[np.ndarray], lengths: np.ndarray) -> list[np.ndarray]:
    if batches:
        longest = max(range(len(batches)), key=lambda b: int(lengths[batches[b]].max()))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches (index arrays): a permutation of every row, grouped by similar length.

    The batch holding the longest example comes first, so an out-of-memory error shows at once.
    """
    perm = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    group = batch_size * MEGABATCH
    for start in range(0, len(perm), group):
        chunk = perm[start:start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return _longest_first(batches, lengths)


def collate(split: TensorSplit, rows: Sequence[int] | np.ndarray, pad_id: int,
            multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Pad ``rows`` of ``split`` to their longest (rounded up to ``multiple_of``); add ``labels``.

    One gather per column: position ``j`` of row ``r`` reads ``values[offsets[r] + j]`` where ``j`` is
    within the row, and the pad value elsewhere.
    """
    import torch

    rows = np.asarray(rows, dtype=np.int64)
    lengths = split.lengths[rows]
    width = -(-int(lengths.max()) // multiple_of) * multiple_of
    positions = np.arange(width)
    inside = positions[None, :] < lengths[:, None]
    batch = {}
    for name, values in split.columns.items():
        where = np.where(inside, split.offsets[name][rows][:, None] + positions[None, :], 0)
        padded = np.where(inside, values[where], PAD_VALUES.get(name, pad_id))
        batch[name] = torch.from_numpy(padded.astype(np.int64, copy=False))
    labels = split.labels[rows]
    # class ids for cross-entropy; floats for BCE (multi-label) and MSE (regression)
    batch["labels"] = torch.from_numpy(labels.astype(np.float32 if labels.dtype.kind == "f" else np.int64, copy=False))
    return batch
