"""A study's runs in the trackers, kept in step with the study: runs that dead processes left open are settled
with the state the study gave their trials, and the study's own run (MLflow's parent) ends with the command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import optuna
from optuna.trial import TrialState

from optuna_seqclf.settings import HParams
from optuna_seqclf.study.queue import claimed_point, confirm_seed_of
from optuna_seqclf.study.schema import DUPLICATE_ATTR, INFEASIBLE_ATTR, TRACKING_ATTR
from optuna_seqclf.tracking import NoStudyRun, Tracker


def failed_runs(study: optuna.Study) -> dict[str, str]:
    """The run key of each FAIL trial and its state (``Tracker.settle``): a run a dead process left open is one of
    them (the study marks such trials FAIL; a trial that ended itself closed its run before its state was told)."""
    return {f"trial-{t.number}": "INFEASIBLE" if INFEASIBLE_ATTR in t.user_attrs else "FAIL"
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}


def settle_dead_runs(study: optuna.Study, tracker: Tracker) -> None:
    """Close the runs of trials whose process died (nothing to ask a tracker when no trial failed, nor one that
    keeps no run of the study: not even a read of the study)."""
    if not isinstance(tracker, NoStudyRun) and (failed := failed_runs(study)):
        tracker.settle(failed)


def earlier_attempts(study: optuna.Study, number: int, point: HParams, seed: int | None = None) -> list[int]:
    """The failed trials before trial ``number`` of ``point`` (with confirmation ``seed``): what it retries."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.number < number and DUPLICATE_ATTR not in t.user_attrs and claimed_point(t) == point
            and confirm_seed_of(t) == seed]


@contextlib.contextmanager
def tracked_study(study: optuna.Study, tracker: Tracker) -> Iterator[None]:
    """Around a command's work on ``study``: runs left open by dead processes settled at the end, and the study's
    own run ended with how the work ended (interrupted, failed, done), unless other processes still train
    trials of it (the last one to stop ends it)."""
    if isinstance(tracker, NoStudyRun):  # Aim, or nothing: no run of the study to keep in step, no read of it
        yield
        return
    state = "INTERRUPTED"
    try:
        yield
        state = "COMPLETE"
    except Exception:
        state = "FAIL"
        raise
    finally:
        # an error on the way out (the storage gone too) must not hide the one that ended the work
        with contextlib.suppress(Exception) if state != "COMPLETE" else contextlib.nullcontext():
            _end(study, tracker, state)


def _end(study: optuna.Study, tracker: Tracker, state: str) -> None:
    settle_dead_runs(study, tracker)
    if (where := tracker.study_run()) is not None:
        study.set_user_attr(TRACKING_ATTR, where)  # for `report`, which puts its figures there
    if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tracker.finish(state)
