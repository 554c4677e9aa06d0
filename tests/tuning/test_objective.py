"""The objective on the trainer seam: what a trial records, how it fails, that a confirmation run is never
pruned, and that a trial whose point is taken trains nothing. No training: the scripted trainer."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import CPU, EXAMPLE_DATA
from optuna_seqclf import DataSpec, HParams, SearchSpace, TrainSettings, prepare
from optuna_seqclf.settings import Metric
from optuna_seqclf.study.queue import enqueue_point
from optuna_seqclf.study.schema import (
    CONFIRM_SEED_ATTR,
    DEV_ACCURACY_ATTR,
    DEV_CLASS_F1_ATTR,
    DEV_F1_ATTR,
    DUPLICATE_ATTR,
    ERROR_ATTR,
    HISTORY_ATTR,
)
from optuna_seqclf.tracking import NullTracker
from optuna_seqclf.tuning.objective import Objective
from scripted import ScriptedTrainer, fail_on

SPACE = SearchSpace((8,), (1e-3, 1e-4))


@pytest.fixture(scope="module")
def prepared(tiny_model: Path):  # type: ignore[no-untyped-def]
    settings = TrainSettings(model=str(tiny_model), epochs=2)
    return settings, prepare(DataSpec(EXAMPLE_DATA), settings, CPU)


def _objective(prepared, trainer: ScriptedTrainer, metric: str = "macro-f1") -> Objective:  # type: ignore[no-untyped-def]
    settings, inputs = prepared
    return Objective(inputs, settings, CPU, SPACE, NullTracker(), "s", metric=Metric(metric), trainer=trainer)


def _study() -> optuna.Study:
    return optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())


def test_a_trial_returns_the_metric_and_records_every_dev_score(prepared) -> None:  # type: ignore[no-untyped-def]
    study, trainer = _study(), ScriptedTrainer(score=lambda hp, seed: 0.75)
    enqueue_point(study, HParams(8, 1e-3))
    study.optimize(_objective(prepared, trainer, "accuracy"), n_trials=1)
    [trial] = study.get_trials()
    assert trial.value == 0.75 and trainer.calls == [(HParams(8, 1e-3), 1)]  # the study's seed
    assert trial.user_attrs[DEV_F1_ATTR] == 0.75 and trial.user_attrs[DEV_ACCURACY_ATTR] == 0.75
    assert set(trial.user_attrs[DEV_CLASS_F1_ATTR]) == {"0", "1"}
    assert [h["epoch"] for h in trial.user_attrs[HISTORY_ATTR]] == [1, 2]
    assert trial.intermediate_values == {1: 0.75, 2: 0.75}  # the learning curve Optuna draws


def test_an_error_is_recorded_on_the_trial_before_it_fails(prepared) -> None:  # type: ignore[no-untyped-def]
    study = _study()
    enqueue_point(study, HParams(8, 1e-4))
    study.optimize(_objective(prepared, ScriptedTrainer(fail=fail_on())), n_trials=1, catch=(RuntimeError,))
    [trial] = study.get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[ERROR_ATTR] == "RuntimeError: CUDA error: device-side assert triggered (simulated)"


def test_a_confirmation_run_trains_with_its_seed_and_is_never_pruned(prepared) -> None:  # type: ignore[no-untyped-def]
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    trainer = ScriptedTrainer()
    enqueue_point(study, HParams(8, 1e-3), seed=7)
    enqueue_point(study, HParams(8, 1e-4))
    study.optimize(_objective(prepared, trainer), n_trials=2)
    confirm, grid = study.get_trials()
    assert confirm.user_attrs[CONFIRM_SEED_ATTR] == 7 and confirm.state == TrialState.COMPLETE
    assert grid.state == TrialState.PRUNED  # a grid trial is pruned after its first epoch
    assert trainer.calls[0] == (HParams(8, 1e-3), 7)


def test_a_point_already_taken_trains_nothing(prepared) -> None:  # type: ignore[no-untyped-def]
    study, trainer = _study(), ScriptedTrainer()
    enqueue_point(study, HParams(8, 1e-3))
    enqueue_point(study, HParams(8, 1e-3))  # two workers queued the same retry at once
    study.optimize(_objective(prepared, trainer), n_trials=2)
    first, second = study.get_trials()
    assert first.state == TrialState.COMPLETE and second.state == TrialState.PRUNED
    assert second.user_attrs[DUPLICATE_ATTR] == first.number and len(trainer.calls) == 1
