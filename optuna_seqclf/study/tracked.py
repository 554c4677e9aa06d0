"""A study's runs in the trackers, kept in step with the study: runs that dead processes left open are settled
with the state the study gave their trials, and the study's own run (MLflow's parent) ends with the command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import optuna
from optuna.trial import TrialState

from optuna_seqclf.settings import HParams
from optuna_seqclf.study.queue import claimed_point, confirm_seed_of
from optuna_seqclf.study.schema import DUPLICATE_ATTR, INFEASIBLE_ATTR
from optuna_seqclf.tracking import Tracker


def finished_runs(study: optuna.Study) -> dict[str, str]:
    """Each finished trial's run key and the state the study gave it (``Tracker.settle``)."""
    return {f"trial-{t.number}": "INFEASIBLE" if INFEASIBLE_ATTR in t.user_attrs else t.state.name
            for t in study.get_trials(deepcopy=False) if t.state.is_finished()}


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
    state = "INTERRUPTED"
    try:
        yield
        state = "COMPLETE"
    except Exception:
        state = "FAIL"
        raise
    finally:
        tracker.settle(finished_runs(study))
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            tracker.finish(state)
