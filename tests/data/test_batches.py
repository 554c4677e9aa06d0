"""Length-grouped batches see every example once per epoch, are padded per batch, and gather the right rows."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

import optuna_seqclf.training.loop as train_lib
from conftest import CPU
from optuna_seqclf import HParams
from optuna_seqclf.data.batches import epoch_batches, length_grouped_batches
from optuna_seqclf.settings import BATCHINGS
from optuna_seqclf.training.loop import fine_tune


def test_length_grouped_batches_cover_every_example_once_with_dynamic_padding(
        sst2, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    train = encoded.train.select(range(600))
    lengths = np.asarray(train["length"])
    batches: list[dict[str, torch.Tensor]] = []
    rows_seen: list[int] = []
    real_collate = train_lib.collate

    def spy(split, rows, pad_id, multiple_of=1):  # type: ignore[no-untyped-def]
        batch = real_collate(split, rows, pad_id, multiple_of)
        if len(split) == len(train):  # training batches (evaluation batches the dev split)
            rows_seen.extend(int(r) for r in rows)
            batches.append(batch)
        return batch

    monkeypatch.setattr(train_lib, "collate", spy)
    two_epochs = replace(settings, epochs=2, batching="grouped")
    fine_tune(settings.model, prepared.tokenizer, train, encoded.dev.select(range(50)),
              prepared.corpus.id2label, HParams(16, 1e-4), two_epochs, seed=1, machine=CPU)
    assert len(rows_seen) == 2 * 600
    first, second = rows_seen[:600], rows_seen[600:]
    assert sorted(first) == sorted(second) == list(range(600))  # every example exactly once per epoch
    assert first != second  # a fresh shuffle each epoch
    spreads = []
    for batch in batches:
        real = batch["attention_mask"].sum(dim=1)
        assert batch["input_ids"].shape[1] == int(real.max()) <= 64  # padded to the batch's longest only
        assert all(batch["input_ids"][i, int(n):].eq(prepared.tokenizer.pad_token_id).all() for i, n in enumerate(real))
        spreads.append(int(real.max() - real.min()))
    assert int(batches[0]["attention_mask"].sum(dim=1).max()) == lengths.max()  # the longest batch first
    rng = np.random.default_rng(0)
    random_spread = np.mean([np.ptp(lengths[rng.permutation(len(lengths))[:16]]) for _ in range(200)])
    assert np.mean(spreads) < 0.5 * random_spread  # batches group similar lengths


@pytest.mark.parametrize("batching", BATCHINGS)
def test_batches_are_a_permutation_for_any_size_longest_first(batching: str) -> None:
    lengths = np.random.default_rng(3).integers(1, 60, size=1234)
    for batch_size in (1, 7, 32, 5000):
        batches = epoch_batches(lengths, batch_size, np.random.default_rng(1), batching)
        assert sorted(np.concatenate(batches).tolist()) == list(range(1234))
        assert all(len(b) <= batch_size for b in batches)
        assert lengths[batches[0]].max() == lengths.max()  # an out-of-memory error shows on the first step


def test_each_batching_cuts_the_epoch_its_own_way() -> None:
    lengths = np.random.default_rng(4).integers(1, 100, size=3200)

    def cut(batching: str) -> list[np.ndarray]:
        return epoch_batches(lengths, 16, np.random.default_rng(7), batching)

    def spread(batches: list[np.ndarray]) -> float:  # mean length range inside a batch
        return float(np.mean([np.ptp(lengths[b]) for b in batches]))

    def runs_downhill(batches: list[np.ndarray]) -> float:  # how often a batch is no longer than the one before
        tops = [int(lengths[b].max()) for b in batches]
        return float(np.mean([b <= a for a, b in itertools.pairwise(tops[1:])]))  # the first: the longest

    random, grouped, shuffled = cut("random"), cut("grouped"), cut("grouped-shuffled")
    assert spread(random) > 4 * spread(grouped)  # random batches mix lengths; grouped ones do not
    assert grouped[0].tolist() == length_grouped_batches(lengths, 16, np.random.default_rng(7))[0].tolist()
    # grouped-shuffled: the very batches of grouped, in another order; grouped runs long to short in a group
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, grouped))
    assert runs_downhill(grouped) > 0.95 and 0.4 < runs_downhill(shuffled) < 0.7


def test_tensor_split_reads_arrow_in_place_and_collates_the_right_rows(sst2) -> None:  # type: ignore[no-untyped-def]
    from optuna_seqclf.data.batches import TensorSplit, collate

    _, prepared, encoded = sst2
    split = TensorSplit.from_dataset(encoded.train)
    assert not split.columns["input_ids"].flags.owndata  # a view of the dataset's Arrow buffer, not a copy
    shuffled = encoded.train.shuffle(seed=3).select(range(300))  # an indices mapping: rows out of order
    for dataset in (encoded.train, shuffled):
        split = TensorSplit.from_dataset(dataset)
        rows = [5, 0, 299, 17]
        batch = collate(split, rows, prepared.tokenizer.pad_token_id, multiple_of=8)
        assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].dtype == torch.long
        for r, i in enumerate(rows):
            ids = dataset[i]["input_ids"]
            assert batch["input_ids"][r, : len(ids)].tolist() == ids
            assert batch["input_ids"][r, len(ids):].eq(prepared.tokenizer.pad_token_id).all()
            width = batch["input_ids"].shape[1]
            assert batch["attention_mask"][r].tolist() == [1] * len(ids) + [0] * (width - len(ids))
            assert int(batch["labels"][r]) == dataset[i]["labels"]
