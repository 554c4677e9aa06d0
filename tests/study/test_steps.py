"""A worker's next step, typed: the queue answers TrainQueued, TrainPoint or Done; a failed point with retries
left comes back as a TrainPoint, one without is Done."""

from __future__ import annotations

import optuna

from optuna_seqclf.settings import SearchSpace
from optuna_seqclf.study.queue import enqueue_point, next_point
from optuna_seqclf.study.schema import ERROR_ATTR
from optuna_seqclf.study.steps import Done, TrainPoint, TrainQueued

SPACE = SearchSpace((8,), (1e-3, 1e-4))


def _train_queued(study: optuna.Study, fail: bool = False) -> None:
    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("batch_size", list(SPACE.batch_sizes))
        trial.suggest_categorical("learning_rate", list(SPACE.learning_rates))
        if fail:  # as the objective records it
            trial.set_user_attr(ERROR_ATTR, "RuntimeError: out of memory (simulated)")
            raise RuntimeError("out of memory (simulated)")
        return 0.5

    study.optimize(objective, n_trials=1, catch=(RuntimeError,))


def test_the_queue_answers_each_kind_of_step() -> None:
    study = optuna.create_study(direction="maximize")
    step = next_point(study, SPACE, max_retries=0)
    assert isinstance(step, TrainPoint) and step.seed is None and step.point in set(SPACE.points())
    enqueue_point(study, step.point)
    assert next_point(study, SPACE, max_retries=0) == TrainQueued()
    _train_queued(study, fail=True)
    assert next_point(study, SPACE, max_retries=1) == TrainPoint(step.point)  # a retry left: it comes back
    others = [p for p in SPACE.points() if p != step.point]
    assert next_point(study, SPACE, max_retries=0) == TrainPoint(others[0])  # given up: the next point
    enqueue_point(study, others[0])
    _train_queued(study)
    assert next_point(study, SPACE, max_retries=0) == Done()
