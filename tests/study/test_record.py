"""Resume semantics: failed, interrupted and finished points; study identity; the grid order."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, tune
from optuna_seqclf.errors import StudyError
from optuna_seqclf.study.queue import GRID_ORDER, grid_order
from optuna_seqclf.study.record import StudyRecord, create_or_resume
from optuna_seqclf.study.schema import RECORD_ATTR
from scripted import ScriptedTrainer, die_on_call, fail_on

SPACE = SearchSpace((8, 16), (1e-3, 1e-4))


def _spec(name: str = "s", retries: int = 2) -> StudySpec:
    # the grid alone (no confirmation stage): these tests count the grid's trials
    return StudySpec(study_name=name, storage=f"sqlite:///studies/{name}.db", max_retries=retries, confirm_top=0)


def _settings(model: Path, epochs: float = 1) -> TrainSettings:
    return TrainSettings(model=str(model), epochs=epochs)


def _complete_per_point(study: optuna.Study) -> dict[tuple[int, float], int]:
    counts: dict[tuple[int, float], int] = {}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        key = (t.params["batch_size"], t.params["learning_rate"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _load(name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///studies/{name}.db")


def test_failed_point_is_retried_and_recorded(workdir: Path, tiny_model: Path) -> None:
    flaky = ScriptedTrainer(fail=fail_on((16, 1e-4), times=1))
    result = tune(_spec(), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SPACE, tracking=None, trainer=flaky)
    study = _load()
    assert _complete_per_point(study) == {(bs, lr): 1 for bs in (8, 16) for lr in (1e-3, 1e-4)}
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and "device-side assert" in failed[0].user_attrs["error"]
    assert result.failed_points == []


def test_point_that_keeps_failing_is_given_up(workdir: Path, tiny_model: Path) -> None:
    broken = ScriptedTrainer(fail=fail_on((16, 1e-3), error=lambda: ValueError("loss is nan")))
    result = tune(_spec(retries=1), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SPACE, tracking=None,
                  trainer=broken)
    assert [(p.point.batch_size, p.point.learning_rate) for p in result.failed_points] == [(16, 1e-3)]
    assert len(result.failed_points[0].errors) == 2  # first try + 1 retry
    assert result.best is not None
    # Running again does not retry a point that has used up its retries...
    again = tune(_spec(retries=1), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SPACE, tracking=None,
                 trainer=broken)
    assert again.stats.trained == 0
    # ...unless the user allows more.
    fixed = tune(_spec(retries=2), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SPACE, tracking=None,
                 trainer=ScriptedTrainer())
    assert fixed.stats.trained == 1 and fixed.failed_points == []


def test_trial_left_running_by_dead_process_is_retrained(workdir: Path, tiny_model: Path) -> None:
    dies_on_third = ScriptedTrainer(fail=die_on_call(3))  # SystemExit: the trial stays RUNNING, like a kill -9
    with pytest.raises(SystemExit):
        tune(_spec(), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SPACE, tracking=None, trainer=dies_on_third)
    seen = [hp for hp, _ in dies_on_third.calls]
    states = [t.state for t in _load().get_trials()]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING, TrialState.WAITING]  # the 4th still queued
    resumed = tune(_spec(), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SPACE, tracking=None,
                   trainer=ScriptedTrainer())
    assert resumed.stats.recovered == [2]
    assert resumed.stats.trained == 2
    study = _load()
    assert _complete_per_point(study) == {(bs, lr): 1 for bs in (8, 16) for lr in (1e-3, 1e-4)}
    assert study.get_trials()[2].state == TrialState.FAIL
    dead_point = (seen[2].batch_size, seen[2].learning_rate)
    retried = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
               if (t.params["batch_size"], t.params["learning_rate"]) == dead_point]
    assert retried[0].number == 4


def _tune(spec: StudySpec, data: DataSpec, settings: TrainSettings, space: SearchSpace) -> None:
    tune(spec, data, settings, space, tracking=None, trainer=ScriptedTrainer())


def test_resume_refuses_changed_inputs(workdir: Path, tiny_model: Path) -> None:
    _tune(_spec(), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SearchSpace((8,), (1e-3,)))
    with pytest.raises(StudyError, match=r"epochs: study has 1\.0, now 2\.0.*use another --study-name"):
        _tune(_spec(), DataSpec(EXAMPLE_DATA), _settings(tiny_model, epochs=2), SearchSpace((8,), (1e-3,)))
    with pytest.raises(StudyError, match=r"batch sizes: study has 8, now 8,16"):
        _tune(_spec(), DataSpec(EXAMPLE_DATA), _settings(tiny_model), SearchSpace((8, 16), (1e-3,)))
    other = workdir / "other-data"
    shutil.copytree(EXAMPLE_DATA, other)
    # The same files in another folder are the same data: the study goes on.
    _tune(_spec(), DataSpec(other), _settings(tiny_model), SearchSpace((8,), (1e-3,)))
    with (other / "dev.txt").open("a", encoding="utf-8") as fh:
        fh.write("one more sentence\t1\n")
    with pytest.raises(StudyError, match=rf"data: the study was tuned on {EXAMPLE_DATA}\)?;?"):
        _tune(_spec(), DataSpec(other), _settings(tiny_model), SearchSpace((8,), (1e-3,)))
    _tune(_spec("o"), DataSpec(other), _settings(tiny_model), SearchSpace((8,), (1e-3,)))
    with (other / "dev.txt").open("a", encoding="utf-8") as fh:
        fh.write("and another\t0\n")
    with pytest.raises(StudyError, match=rf"data: the files in {other} changed since the study was tuned"):
        _tune(_spec("o"), DataSpec(other), _settings(tiny_model), SearchSpace((8,), (1e-3,)))
    assert len(_load().get_trials()) == 1


def _record(grid_order: str) -> StudyRecord:
    from optuna_seqclf.settings import DEFAULT_BATCH_SIZES, DEFAULT_LEARNING_RATES

    return StudyRecord.from_json({
        "data_dir": "d", "text_column": "sentence", "label_column": "Label", "text_pair_column": None, "model": "m",
        "tokenizer": None, "epochs": 4.0, "max_steps": None, "max_seq_length": 128, "seed": 1,
        "batch_sizes": DEFAULT_BATCH_SIZES, "learning_rates": DEFAULT_LEARNING_RATES, "config_name": "c",
        "task_name": "t", "data_fingerprint": "f", "grid_order": grid_order})


def test_a_study_made_before_batching_was_a_setting_trained_grouped_batches() -> None:
    """What 0.4 stored has no ``batching``: its trials trained length-grouped batches, so the record says so
    (``train`` then trains its replicas the same way), and a resume with other batches is refused by name."""
    old = _record("shuffled").to_json()
    del old["batching"]
    assert StudyRecord.from_json(old).settings.batching == "grouped"
    now = StudyRecord.from_json({**old, "batching": "random"})
    assert StudyRecord.from_json(old).differences(now) == ["batching: study has 'grouped', now 'random'"]


def _run_points(study: optuna.Study, n: int) -> list[tuple[int, float]]:
    record_space = SearchSpace()

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("batch_size", list(record_space.batch_sizes))
        trial.suggest_categorical("learning_rate", list(record_space.learning_rates))
        return 0.5

    study.optimize(objective, n_trials=n)
    return [(t.params["batch_size"], t.params["learning_rate"]) for t in study.get_trials()]


def test_a_new_study_queues_its_grid_in_the_promising_first_order() -> None:
    """create_or_resume queues every point; trials then train them in grid_order's order (test_grid checks
    that order: the typical fine-tuning settings first)."""
    storage = optuna.storages.InMemoryStorage()
    study = create_or_resume(_spec("new"), _record(GRID_ORDER), storage)
    assert [t.state for t in study.get_trials()] == [TrialState.WAITING] * 36
    points = _run_points(study, 36)
    assert points == [(p.batch_size, p.learning_rate) for p in grid_order(SearchSpace(), 1)]
    assert len(study.get_trials()) == 36  # no trial beyond the queue


def test_a_study_made_with_the_shuffled_order_keeps_it_on_resume() -> None:
    """Trial numbers refer to grid positions: a study created before the promising-first order must go
    on in its own order, or its first pass would train some points twice and skip others."""
    storage = optuna.storages.InMemoryStorage()
    old = optuna.create_study(study_name="old", storage=storage, direction="maximize",
                              sampler=optuna.samplers.GridSampler(SearchSpace().as_grid(), seed=1))
    raw = _record("shuffled").to_json()
    del raw["grid_order"]  # what an older optuna-seqclf stored
    old.set_user_attr(RECORD_ATTR, raw)
    first = _run_points(old, 10)
    resumed = create_or_resume(_spec("old"), _record(GRID_ORDER), storage)  # today's tune on that study
    points = _run_points(resumed, 26)
    assert points[:10] == first and len(set(points)) == 36
    reference = optuna.create_study(sampler=optuna.samplers.GridSampler(SearchSpace().as_grid(), seed=1))
    assert points == _run_points(reference, 36)  # the shuffled order, all the way
