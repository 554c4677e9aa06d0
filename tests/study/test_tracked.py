"""What the trackers are told of a study: which runs dead processes left open, which trial a retry retries, and
that the study's run ends with the command unless other workers still train."""

from __future__ import annotations

import contextlib
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from optuna_seqclf.settings import HParams
from optuna_seqclf.study.schema import CONFIRM_SEED_ATTR, DUPLICATE_ATTR, INFEASIBLE_ATTR
from optuna_seqclf.study.tracked import earlier_attempts, failed_runs, tracked_study

GRID = {"batch_size": optuna.distributions.CategoricalDistribution([8, 16]),
        "learning_rate": optuna.distributions.CategoricalDistribution([1e-3, 1e-4])}


def _trial(study: optuna.Study, state: TrialState, bs: int, lr: float, **attrs: Any) -> int:
    study.add_trial(optuna.trial.create_trial(params={"batch_size": bs, "learning_rate": lr}, distributions=GRID,
                                              value=0.5 if state == TrialState.COMPLETE else None, state=state,
                                              user_attrs=attrs))
    return len(study.trials) - 1


def test_retries_and_the_runs_a_dead_process_may_have_left_open() -> None:
    study = optuna.create_study(direction="maximize")
    first = _trial(study, TrialState.FAIL, 8, 1e-3)
    _trial(study, TrialState.FAIL, 16, 1e-3)  # another point
    _trial(study, TrialState.FAIL, 8, 1e-3, **{CONFIRM_SEED_ATTR: 2})  # the same point, a confirmation seed
    _trial(study, TrialState.PRUNED, 8, 1e-3, **{DUPLICATE_ATTR: 0})  # a duplicate trains nothing
    second = _trial(study, TrialState.FAIL, 8, 1e-3, **{INFEASIBLE_ATTR: "out of memory at micro-batch 1"})
    now = len(study.trials)  # the trial training the point again
    assert earlier_attempts(study, now, HParams(8, 1e-3)) == [first, second]
    assert earlier_attempts(study, now, HParams(8, 1e-3), seed=2) == [2]
    assert earlier_attempts(study, first, HParams(8, 1e-3)) == []
    study.ask()  # a trial running now
    assert failed_runs(study) == {"trial-0": "FAIL", "trial-1": "FAIL", "trial-2": "FAIL", "trial-4": "INFEASIBLE"}


class _Ends:
    def __init__(self) -> None:
        self.settled: list[dict[str, str]] = []
        self.finished: list[str] = []

    def settle(self, finished: dict[str, str]) -> None:
        self.settled.append(dict(finished))

    def finish(self, state: str) -> None:
        self.finished.append(state)

    def study_run(self) -> None:
        return None


@pytest.mark.parametrize(("raised", "state"), [(None, "COMPLETE"), (RuntimeError, "FAIL"),
                                               (KeyboardInterrupt, "INTERRUPTED")])
def test_the_study_run_ends_as_the_command_did(raised: type[BaseException] | None, state: str) -> None:
    study, tracker = optuna.create_study(), _Ends()
    with pytest.raises(raised) if raised else contextlib.nullcontext(), \
            tracked_study(study, tracker):  # type: ignore[arg-type]
        if raised:
            raise raised()
    assert tracker.finished == [state] and tracker.settled == []  # no trial failed: nothing to settle


def test_the_study_run_stays_open_while_another_worker_trains() -> None:
    study, tracker = optuna.create_study(), _Ends()
    study.ask()  # RUNNING: a trial of another worker
    with tracked_study(study, tracker):  # type: ignore[arg-type]
        pass
    assert tracker.finished == []
