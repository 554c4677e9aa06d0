"""tune() as a library call: the corpus tokenised once per study, no checkpoints written, plain results."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

import optuna_seqclf.inputs as inputs_lib
from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, TrialResult, study_result, tune


def test_corpus_is_tokenised_once_per_study_and_trials_write_no_checkpoints(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = inputs_lib.encode_corpus

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(inputs_lib, "encode_corpus", counting)
    scratch = workdir / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spec = StudySpec(study_name="once", storage="sqlite:///studies/once.db")
    result = tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=2),
                  SearchSpace((8, 16), (1e-3, 1e-4)), log_dir=None)
    assert result.stats.trained == 4 and calls["n"] == 1
    assert list(scratch.iterdir()) == []  # trial scratch folders are gone, and nothing was checkpointed
    assert sorted(p.name for p in workdir.iterdir()) == ["studies", "tmp"]


def test_tune_returns_plain_results_and_study_result_reads_them_back(workdir: Path, tiny_model: Path) -> None:
    spec = StudySpec(study_name="plain", storage="sqlite:///studies/plain.db")
    result = tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1),
                  SearchSpace((8,), (1e-3, 1e-4)), log_dir=None)
    assert isinstance(result.best, TrialResult) and isinstance(result.best_params, HParams)
    assert [p.state for p in result.points] == ["COMPLETE", "COMPLETE"]
    assert result.best.value == max(p.result.value for p in result.points if p.result)
    assert len(result.best.history) == 1 and result.best.history[0]["f1"] == pytest.approx(result.best.value)
    again = study_result("plain", spec.storage)
    assert again.best == result.best and again.points == result.points
