"""tune() as a library call: the corpus tokenised once per study, no checkpoints written, plain results."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

import optuna_seqclf.training.prepared as inputs_lib
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
                  SearchSpace((8, 16), (1e-3, 1e-4)), tracking=None)
    assert result.stats.trained == 4 and calls["n"] == 1
    assert list(scratch.iterdir()) == []  # trial scratch folders are gone, and nothing was checkpointed
    assert sorted(p.name for p in workdir.iterdir()) == ["studies", "tmp"]


def test_tune_returns_plain_results_and_study_result_reads_them_back(workdir: Path, tiny_model: Path) -> None:
    spec = StudySpec(study_name="plain", storage="sqlite:///studies/plain.db")
    result = tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1),
                  SearchSpace((8,), (1e-3, 1e-4)), tracking=None)
    assert isinstance(result.best, TrialResult) and isinstance(result.best_params, HParams)
    assert [p.state for p in result.points] == ["COMPLETE", "COMPLETE"]
    assert result.best.value == max(p.result.value for p in result.points if p.result)
    assert len(result.best.history) == 1 and result.best.history[0]["f1"] == pytest.approx(result.best.value)
    again = study_result("plain", spec.storage)
    assert again.best == result.best and again.points == result.points


def _scripted_fine_tune(scores: dict[float, dict[str, float]]):  # type: ignore[no-untyped-def]
    """A stand-in for fine_tune whose dev metrics per learning rate are given (the predictions are the truth,
    so no run is flagged as failed)."""
    import numpy as np

    from optuna_seqclf.training.loop import EvalResult, FineTuneResult

    def fine_tune(model, tokenizer, train, dev, id2label, hp, *args, **kwargs):  # type: ignore[no-untyped-def]
        labels = np.asarray(dev["labels"])
        metrics = {"loss": 0.5, "micro_f1": 0.5, **scores[hp.learning_rate]}
        dev_result = EvalResult(metrics, labels, np.eye(2)[labels], {"0": 0.1, "1": 0.2})
        return FineTuneResult(None, {"train_runtime": 0.1, "train_loss": 0.5, "epoch": 1.0, "global_step": 1},
                              dev_result)

    return fine_tune


@pytest.mark.parametrize(("metric", "best_lr"), [("macro-f1", 1e-4), ("accuracy", 1e-3), ("mcc", 1e-3)])
def test_metric_decides_what_is_maximised(workdir: Path, tiny_model: Path, metric: str, best_lr: float) -> None:
    import optuna

    # 1e-3 has the better accuracy and MCC, 1e-4 the better macro-F1: each metric picks another point.
    scores = {1e-3: {"f1": 0.6, "accuracy": 0.9, "mcc": 0.5}, 1e-4: {"f1": 0.8, "accuracy": 0.7, "mcc": 0.4}}
    spec = StudySpec(study_name=metric, storage=f"sqlite:///studies/{metric}.db", metric=metric, confirm_top=0)
    result = tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1),
                  SearchSpace((8,), (1e-3, 1e-4)), tracking=None, trainer=_scripted_fine_tune(scores))
    assert result.best_params == HParams(8, best_lr)
    assert result.metric.name == metric
    key = {"macro-f1": "f1", "accuracy": "accuracy", "mcc": "mcc"}[metric]
    trials = optuna.load_study(study_name=metric, storage=spec.storage).get_trials()
    assert sorted(t.value for t in trials) == sorted(s[key] for s in scores.values())
    assert {t.user_attrs["dev_macro_f1"] for t in trials} == {0.6, 0.8}
    assert all(t.user_attrs["dev_f1_per_class"] == {"0": 0.1, "1": 0.2} for t in trials)


def test_another_metric_is_another_study(workdir: Path, tiny_model: Path) -> None:
    from optuna_seqclf.errors import StudyError

    trainer = _scripted_fine_tune({1e-3: {"f1": 0.6, "accuracy": 0.9, "mcc": 0.5}})
    args = (DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1), SearchSpace((8,), (1e-3,)))
    tune(StudySpec(study_name="m", storage="sqlite:///studies/m.db"), *args, tracking=None, trainer=trainer)
    with pytest.raises(StudyError, match=r"maximises dev macro-F1, not accuracy \(--metric accuracy\)"):
        tune(StudySpec(study_name="m", storage="sqlite:///studies/m.db", metric="accuracy"), *args, tracking=None,
             accept_changes=True, trainer=trainer)


def test_the_default_job_prunes_and_confirms_and_two_flags_bring_back_the_reference(
        workdir: Path, tiny_model: Path) -> None:
    """The defaults (issue 24): the median pruner stops points behind the others' median, never after their
    last epoch; the top 3 complete points get one more seed each and the choice is their best mean. The
    reference's job is ``--pruner none --confirm-top 0``: every point for all its epochs, the single seed's
    best. Scripted scores (tests/scripted.py): best at 1e-3 and the smallest batch, the same after each epoch."""
    import optuna
    from optuna.trial import TrialState

    from optuna_seqclf.study.schema import CONFIRM_SEED_ATTR, DUPLICATE_ATTR, PRUNED_AFTER_ATTR, SELECTION_ATTR
    from scripted import ScriptedTrainer

    space = SearchSpace((8, 16), (1e-2, 1e-3, 1e-4, 1e-5))
    settings = TrainSettings(model=str(tiny_model), epochs=2)
    studies = {}
    for name, spec in (("default", StudySpec(study_name="default", storage="sqlite:///studies/default.db")),
                       ("reference", StudySpec(study_name="reference", storage="sqlite:///studies/reference.db",
                                               pruner="none", confirm_top=0))):
        result = tune(spec, DataSpec(EXAMPLE_DATA), settings, space, tracking=None, trainer=ScriptedTrainer())
        assert result.best_params == HParams(8, 1e-3)
        studies[name] = optuna.load_study(study_name=name, storage=spec.storage)
    trials = [t for t in studies["default"].get_trials() if DUPLICATE_ATTR not in t.user_attrs]
    grid = [t for t in trials if CONFIRM_SEED_ATTR not in t.user_attrs]
    pruned = [t for t in grid if t.state == TrialState.PRUNED]
    assert len(grid) == 8 and pruned, "the default pruner stopped no point"
    assert all(t.user_attrs[PRUNED_AFTER_ATTR] < 2 for t in pruned)
    complete = sorted((t for t in grid if t.state == TrialState.COMPLETE), key=lambda t: -(t.value or 0))
    confirmed = {(t.params["batch_size"], t.params["learning_rate"], t.user_attrs[CONFIRM_SEED_ATTR])
                 for t in trials if CONFIRM_SEED_ATTR in t.user_attrs and t.state == TrialState.COMPLETE}
    assert confirmed == {(t.params["batch_size"], t.params["learning_rate"], 2) for t in complete[:3]}
    assert studies["default"].user_attrs[SELECTION_ATTR]["rule"] == "confirmed"
    reference = studies["reference"].get_trials()
    assert len(reference) == 8 and all(t.state == TrialState.COMPLETE for t in reference)
    assert not any(CONFIRM_SEED_ATTR in t.user_attrs for t in reference)
    assert studies["reference"].user_attrs[SELECTION_ATTR]["rule"] == "single-seed"


def test_a_trial_is_never_pruned_after_its_last_epoch(workdir: Path, tiny_model: Path) -> None:
    """Pruning then saves nothing and would throw away a finished score (and the weights a replica reuses)."""
    import optuna
    from optuna.trial import TrialState

    from scripted import ScriptedTrainer

    spec = StudySpec(study_name="last", storage="sqlite:///studies/last.db", pruner="median", confirm_top=0)
    tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1),
         SearchSpace((8, 16), (1e-2, 1e-3, 1e-4, 1e-5)), tracking=None, trainer=ScriptedTrainer())
    trials = optuna.load_study(study_name="last", storage=spec.storage).get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
