"""Length-grouped batches of pre-tokenised examples, padded per batch. No model, no Trainer.

Sentences of similar length go in the same batch (shuffled mega-batches of 50 batches, each sorted by
length: the HF Trainer's ``group_by_length`` recipe), so a batch is padded to its own longest sentence
and little compute is spent on padding. Every example is visited exactly once per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import datasets
    import torch

MEGABATCH = 50  # batches per sorted group
PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0}  # input_ids pad with the tokenizer's pad id


@dataclass(frozen=True)
class TensorSplit:
    """A tokenised split as one 1-D tensor per row and column, ready to be padded into batches."""

    columns: dict[str, list[torch.Tensor]]
    labels: torch.Tensor
    lengths: np.ndarray

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset) -> TensorSplit:
        import torch

        names = [c for c in dataset.column_names if c not in ("labels", "length")]
        columns = {name: [torch.tensor(row, dtype=torch.long) for row in dataset[name]] for name in names}
        return cls(columns, torch.tensor(dataset["labels"], dtype=torch.long), np.asarray(dataset["length"]))

    def __len__(self) -> int:
        return len(self.labels)


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
    if batches:
        longest = max(range(len(batches)), key=lambda b: int(lengths[batches[b]].max()))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def collate(split: TensorSplit, rows: Sequence[int] | np.ndarray, pad_id: int,
            multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Pad ``rows`` of ``split`` to their longest (rounded up to ``multiple_of``); add ``labels``."""
    import torch

    width = int(split.lengths[rows].max())
    width = -(-width // multiple_of) * multiple_of
    batch = {}
    for name, values in split.columns.items():
        out = torch.full((len(rows), width), PAD_VALUES.get(name, pad_id), dtype=torch.long)
        for r, i in enumerate(rows):
            out[r, : len(values[i])] = values[i]
        batch[name] = out
    batch["labels"] = split.labels[torch.as_tensor(np.asarray(rows))]
    return batch
