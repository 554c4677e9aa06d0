"""A worker finishes the grid: it waits on points other workers hold, trains those whose worker died (once its
heartbeat is stale), and leaves the ones live workers hold to them, saying so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, tune
from optuna_seqclf.study.storage import local_study_lock, open_storage
from scripted import ScriptedTrainer, die_on_call

SPACE = SearchSpace((8,), (1e-3, 1e-4))
# The grid alone: with a confirmation stage a worker waits for the grid points live workers hold (it joins
# the stage), and these tests are about leaving grid points to them.
SPEC = StudySpec(study_name="w", storage="sqlite:///studies/w.db", confirm_top=0)


@pytest.fixture()
def quick_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQCLF_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("SEQCLF_GRACE_PERIOD", "2")  # a worker that waits 2 + 2 x 1 s has seen any dead one go stale


def _tune(model: Path, trainer: ScriptedTrainer | None = None):  # type: ignore[no-untyped-def]
    return tune(SPEC, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(model), epochs=1), SPACE, tracking=None,
                trainer=trainer or ScriptedTrainer())


def _die_on_first_trial(model: Path) -> int:
    """A worker that dies (like kill -9) in its first trial: the trial stays RUNNING. Returns its number."""
    with pytest.raises(SystemExit):
        _tune(model, ScriptedTrainer(fail=die_on_call(1)))
    study = _load()
    [running] = study.get_trials(states=(TrialState.RUNNING,))
    return running.number


def _load() -> optuna.Study:
    return optuna.load_study(study_name="w", storage=open_storage(SPEC.storage))


@pytest.fixture()
def another_worker_present(workdir: Path) -> Iterator[None]:
    """Hold the study's local lock as a live worker would: `tune` then cannot assume RUNNING trials are dead."""
    (workdir / "studies").mkdir()
    with local_study_lock(SPEC.storage):
        yield


def test_point_of_a_dead_worker_is_trained_once_its_heartbeat_is_stale(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, quick_heartbeats: None,
        another_worker_present: None) -> None:
    dead = _die_on_first_trial(tiny_model)
    result = _tune(tiny_model)
    assert result.stats.left_to_others == [] and result.stats.recovered == []  # not assumed dead: found stale
    assert [p.state for p in result.points] == ["COMPLETE", "COMPLETE"]
    study = _load()
    assert study.get_trials()[dead].state == TrialState.FAIL
    complete = [(t.params["batch_size"], t.params["learning_rate"]) for t in study.get_trials(
        states=(TrialState.COMPLETE,))]
    assert sorted(complete) == [(8, 1e-4), (8, 1e-3)]  # each point once, the dead one included


def test_points_live_workers_hold_are_left_to_them(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, quick_heartbeats: None,
        another_worker_present: None) -> None:
    held = _die_on_first_trial(tiny_model)
    storage = open_storage(SPEC.storage)
    trial_id = _load().get_trials()[held]._trial_id
    alive = threading.Event()

    def beat() -> None:  # the holder's heartbeat, as a live worker's thread sends it
        while not alive.wait(0.3):
            storage.record_heartbeat(trial_id)

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    try:
        result = _tune(tiny_model)
    finally:
        alive.set()
        beating.join()
    assert result.stats.left_to_others == [held]
    assert sorted(p.state for p in result.points) == ["COMPLETE", "RUNNING"]


def test_train_on_an_incomplete_grid_names_the_missing_points(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, quick_heartbeats: None,
        another_worker_present: None) -> None:
    from optuna_seqclf import train_replicas

    monkeypatch.setattr("optuna_seqclf.tuning.worker.live_worker_wait_s", lambda: 0.0)  # leave at once
    _die_on_first_trial(tiny_model)
    _tune(tiny_model)
    lines: list[str] = []
    train_replicas("w", SPEC.storage, workdir / "out", seeds=(1,), tracking=None, progress=lines.append,
                   trainer=ScriptedTrainer(with_model=True))
    assert any("is not complete: 1 of 2 points have no result (8 " in line and "(running))" in line for line in lines)


class MalformedResult(ScriptedTrainer):
    """A trainer whose result lacks the metric the study maximises: the objective fails after training."""

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = super().__call__(*args, **kwargs)
        del result.dev.metrics["f1"]
        return result


def test_a_failure_the_objective_did_not_record_is_given_up_after_the_retries(workdir: Path, tiny_model: Path) -> None:
    trainer = MalformedResult()
    result = tune(StudySpec(study_name="bad", storage="sqlite:///studies/bad.db", max_retries=1),
                  DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1), SearchSpace((8,), (1e-3,)),
                  tracking=None, trainer=trainer)
    assert len(trainer.calls) == 2  # the first try and one retry, not a loop
    [point] = result.points
    assert point.state == "FAIL" and point.errors == ("KeyError: 'f1'", "KeyError: 'f1'")
