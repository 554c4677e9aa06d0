"""The speed features are correct: length-grouped batches still see every example once per epoch, padding
is per batch, the corpus is tokenised once per study, no checkpoint is written by a trial, evaluation keeps
input order, and the last epoch's dev evaluation reused as the final one is the same result."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import optuna_seqclf.tuning as tuning_lib
from conftest import SST2_2K
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, prepare, tune
from optuna_seqclf.data import encode_corpus
from optuna_seqclf.model import evaluate, fine_tune


@pytest.fixture(scope="module")
def sst2(tiny_model: Path):  # type: ignore[no-untyped-def]
    settings = TrainSettings(model=str(tiny_model), epochs=1, threads=1)
    prepared = prepare(DataSpec(SST2_2K), settings)
    return settings, prepared, encode_corpus(prepared.corpus, prepared.tokenizer, 64)


def test_length_grouped_batches_cover_every_example_once_with_dynamic_padding(sst2) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    train = encoded.train.select(range(600))
    result = fine_tune(settings.model, prepared.tokenizer, train, encoded.dev.select(range(50)),
                       prepared.corpus.id2label, HParams(16, 1e-4), settings, seed=1)
    loader = result.trainer.get_train_dataloader()  # the loader the trial trained with
    lengths = np.asarray(train["length"])
    seen, spreads, widths = [], [], []
    for batch in loader:
        ids = batch["input_ids"]
        real = batch["attention_mask"].sum(dim=1)
        widths.append(ids.shape[1])
        assert ids.shape[1] == int(real.max())  # padded to the longest in the batch, not to a fixed length
        seen += [tuple(row[: int(n)].tolist()) for row, n in zip(ids, real)]
        spreads.append(int(real.max() - real.min()))
    expected = sorted(tuple(x) for x in train["input_ids"])
    assert sorted(seen) == expected  # every example exactly once per epoch
    assert max(widths) <= 64
    rng = np.random.default_rng(0)
    random_spread = np.mean([np.ptp(lengths[rng.permutation(len(lengths))[:16]]) for _ in range(200)])
    assert np.mean(spreads) < 0.5 * random_spread  # batches group similar lengths


def test_corpus_is_tokenised_once_per_study_and_trials_write_no_checkpoints(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = tuning_lib.encode_corpus

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning_lib, "encode_corpus", counting)
    scratch = workdir / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    from conftest import EXAMPLE_DATA

    spec = StudySpec(study_name="once", storage="sqlite:///studies/once.db")
    result = tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=2),
                  SearchSpace((8, 16), (1e-3, 1e-4)), log_dir=None)
    assert result.stats.trained == 4 and calls["n"] == 1
    assert list(scratch.iterdir()) == []  # trial scratch folders are gone, and nothing was checkpointed
    assert sorted(p.name for p in workdir.iterdir()) == ["studies", "tmp"]


def test_evaluation_keeps_input_order_and_final_eval_is_the_last_epochs(sst2) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    dev = encoded.dev.select(range(40))
    epochs: list[dict[str, float]] = []
    result = fine_tune(settings.model, prepared.tokenizer, encoded.train.select(range(200)), dev,
                       prepared.corpus.id2label, HParams(16, 1e-3), settings, seed=1,
                       on_epoch=lambda epoch, metrics: epochs.append(metrics))
    fresh = evaluate(result.model, dev, prepared.tokenizer, batch_size=7)
    assert result.dev.metrics == pytest.approx(fresh.metrics) and result.dev.metrics == pytest.approx(epochs[-1])
    result.model.eval()
    with torch.inference_mode():
        one_by_one = [int(result.model(input_ids=torch.tensor([row["input_ids"]])).logits.argmax())
                      for row in dev]
    assert fresh.predictions.tolist() == one_by_one
