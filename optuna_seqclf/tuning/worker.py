"""The tuning loop of one worker: one trial at a time, grid points first, then the confirmation stage's runs,
then waiting on what other workers still train (a dead worker's point comes back once its heartbeat is stale).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seqclf.errors import StudyError, first_line, in_chain
from optuna_seqclf.interrupts import InterruptGate
from optuna_seqclf.settings import SearchSpace
from optuna_seqclf.study.confirm import ConfirmPlan, next_confirmation
from optuna_seqclf.study.queue import enqueue_point, next_point, point_status
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.schema import DUPLICATE_ATTR, ERROR_ATTR
from optuna_seqclf.study.steps import Done, Step, TrainPoint, Wait
from optuna_seqclf.study.storage import fail_stale_trials, live_worker_wait_s


def next_step(study: optuna.Study, space: SearchSpace, plan: ConfirmPlan, max_retries: int) -> Step:
    """What a worker does next: the grid's points first, then the confirmation stage's (point, seed) runs."""
    step = next_point(study, space, max_retries)
    if not isinstance(step, Done):
        return step
    return next_confirmation(study, point_status(study, space), plan, max_retries)


def _wait_for_others(study: optuna.Study, gate: InterruptGate, seconds: float = 2.0) -> None:
    """Sleep a little (Ctrl-C still stops it); fail trials of workers whose heartbeat stopped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        gate.check()
        time.sleep(0.1)
    fail_stale_trials(study)


@dataclass
class LoopStats:
    trained: int = 0
    failed: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    left_to_others: list[int] = field(default_factory=list)  # trials live workers were running when we left


class _Idle:
    """A worker with nothing left to start, while other workers' trials run: it waits, failing trials whose
    heartbeat went stale (their points come back to be trained), until nothing runs elsewhere or until a
    dead worker's trial would have gone stale (``live_worker_wait_s``): what still runs then is live."""

    def __init__(self) -> None:
        self.since: float | None = None

    def keep_waiting(self, study: optuna.Study, gate: InterruptGate, stats: LoopStats) -> bool:
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if not running:
            return False
        self.since = self.since if self.since is not None else time.monotonic()
        if time.monotonic() - self.since > live_worker_wait_s():
            stats.left_to_others = running
            return False
        _wait_for_others(study, gate)
        return True


def _optimize_one(study: optuna.Study, objective: Callable[[optuna.Trial], float]) -> None:
    """One trial through ``optimize``. When the storage gives up mid-bookkeeping (``reconnect``), Optuna's own
    clean-up can fail on top of it (Optuna 5.1 raises UnboundLocalError in ``_run_trial``): the storage's
    one-line StudyError is what the user should see, so it is raised instead."""
    try:
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
    except Exception as exc:
        cause = in_chain(exc, lambda err: isinstance(err, StudyError))
        if cause is None or cause is exc:
            raise
        raise cause from None


def recording_errors(objective: Callable[[optuna.Trial], float], trial: optuna.Trial) -> float:
    """``objective(trial)``; a failure it did not record on the trial (``ERROR_ATTR``) is recorded here, so that
    it counts against --max-retries (a trial that fails with no error recorded reads as interrupted, and is
    retried without limit)."""
    try:
        return objective(trial)
    except optuna.TrialPruned:
        raise
    except Exception as exc:
        if ERROR_ATTR not in trial.user_attrs:
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {first_line(exc)}")
        raise


def run_grid(study: optuna.Study, space: SearchSpace, objective: Callable[[optuna.Trial], float],
             max_retries: int, gate: InterruptGate, on_trial: Callable[[FrozenTrial], None] | None = None,
             ) -> LoopStats:
    """Train grid points one trial at a time until every point is complete or given up; then the
    confirmation stage's (point, seed) runs, the same way.

    ``objective`` should call ``gate.check`` while it trains (``Objective`` does, after every step).
    """
    stats = LoopStats()
    ran: list[int] = []
    plan = StudyRecord.from_study(study).confirm_plan()

    def tracked(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        gate.check()
        return recording_errors(objective, trial)

    idle = _Idle()
    while not isinstance(step := next_step(study, space, plan, max_retries), Done) \
            or idle.keep_waiting(study, gate, stats):
        gate.check()
        if isinstance(step, Done):
            continue  # waited on other workers' trials: look again
        idle.since = None
        if isinstance(step, Wait):  # the stage's points depend on grid trials other workers are running
            _wait_for_others(study, gate)
            continue
        if isinstance(step, TrainPoint):
            enqueue_point(study, step.point, step.seed)
        ran.clear()
        # One trial per call: optimize() runs heartbeats and stale-trial checks for us, and marks the
        # trial FAIL before re-raising KeyboardInterrupt. `catch` keeps a crash from ending the grid.
        _optimize_one(study, tracked)
        gate.check()
        if not ran:
            continue
        trial = study.get_trials(deepcopy=False)[ran[0]]
        if DUPLICATE_ATTR in trial.user_attrs:
            continue
        stats.trained += 1
        if trial.state == TrialState.FAIL:
            stats.failed.append(trial.number)
        if on_trial is not None:
            on_trial(trial)
    return stats
