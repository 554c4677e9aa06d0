"""The exactly-once protocol: which grid point each trial trains, in what order, and when a point is done.

Every name this project stores on an Optuna study or trial is in ``study.schema``.

How "every grid point trained exactly once" is kept:

* The creator of a study enqueues every grid point as a WAITING trial, in the study's order, each
  labelled with its point (``POINT_ATTR``). A WAITING trial goes to exactly one worker (PostgreSQL
  locks the row while its state changes WAITING -> RUNNING; on SQLite ``storage.SQLiteStorage`` makes
  that change under a file lock), so the first pass, however many workers share it, trains every
  point once.
* A point whose trial failed, was interrupted, or was left RUNNING by a dead worker is retried by
  enqueuing exactly that point. A point that failed with an error ``max_retries + 1`` times is given
  up and reported.
* Before a worker trains a point it checks no earlier trial took it meanwhile (``owner_of``): two
  workers may enqueue the same retry at once. A trial the sampler made because the queue ran dry
  between a check and its pop (``is_overflow``) trains nothing either.
* Trials left RUNNING by a dead process are failed at start-up when no other process uses the local
  SQLite file (an exclusive ``flock``), and otherwise by Optuna's heartbeats after a grace period.

Studies made by versions before the queue let the GridSampler hand out the first pass (trial ``n``
trains the ``n``-th point of its order); when one is resumed, the points no trial has taken yet are
enqueued in that same order.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seqclf.settings import HParams, SearchSpace
from optuna_seqclf.study.schema import (
    CONFIRM_SEED_ATTR,
    DEV_ACCURACY_ATTR,
    DEV_LOSS_ATTR,
    DEV_MICRO_F1_ATTR,
    DUPLICATE_ATTR,
    ERROR_ATTR,
    FAILED_RUN_ATTR,
    HISTORY_ATTR,
    INFEASIBLE_ATTR,
    POINT_ATTR,
    PRUNED_AFTER_ATTR,
)
from optuna_seqclf.study.steps import Done, TrainPoint, TrainQueued
from optuna_seqclf.study.storage import fail_stale_trials

# --- the order of the first pass --------------------------------------------------------------------
# A new study trains the grid from the settings most likely to be good outwards: BERT's authors recommend
# learning rates from 2e-5 to 5e-5 with batch sizes 16 or 32 for fine-tuning. Trained first, those points
# set a high bar early, so a pruner stops the far-off points after their first epoch: on both SST-2 grids
# of bench/pruning_replay.py, --pruner median then spends 32-38% of the exhaustive grid's steps (about
# 43-50% in random orders) and keeps its best point.
GRID_ORDER = "promising-first"
TYPICAL_LEARNING_RATE = 3e-5  # the middle of 2e-5..5e-5 on a log scale
TYPICAL_BATCH_SIZE = 16 * math.sqrt(2)  # between 16 and 32 on a log scale


def promise_rank(batch_size: int, learning_rate: float) -> tuple[float, float]:
    """How far a point lies from the typical fine-tuning settings (learning rate first): smaller is sooner."""
    return (round(abs(math.log10(learning_rate / TYPICAL_LEARNING_RATE)), 9),
            round(abs(math.log2(batch_size / TYPICAL_BATCH_SIZE)), 9))


def shuffled_order(space: SearchSpace, seed: int) -> list[HParams]:
    """The order in which Optuna's ``GridSampler(space.as_grid(), seed)`` hands out its grid.

    GridSampler keeps that order private, and asking a throw-away study for it logs to the caller's
    Optuna logger, so this repeats its recipe: the product of the values in the order of the sorted
    parameter names, shuffled by ``numpy.random.RandomState(seed)``. ``test_grid`` compares it with a
    real GridSampler study and fails when an Optuna release changes the recipe.
    """
    grid = space.as_grid()
    names = sorted(grid)
    points = list(itertools.product(*(grid[name] for name in names)))
    np.random.RandomState(seed or 0).shuffle(points)
    return [HParams.from_params(dict(zip(names, values))) for values in points]


def grid_order(space: SearchSpace, seed: int, order: str = GRID_ORDER) -> list[HParams]:
    """Every point once, in ``order``: ``promising-first`` (new studies; the seeded shuffle breaks ties) or
    ``shuffled`` (Optuna's GridSampler, which studies made before promising-first keep)."""
    if order == "shuffled":
        return shuffled_order(space, seed)
    if order == "promising-first":
        return sorted(shuffled_order(space, seed), key=lambda p: promise_rank(p.batch_size, p.learning_rate))
    raise ValueError(f"unknown grid order {order!r}")


def enqueue_point(study: optuna.Study, point: HParams, seed: int | None = None) -> None:
    """Queue one trial for ``point`` (with ``seed`` for a confirmation trial): the next worker to ask for a
    trial trains it."""
    params = {"batch_size": point.batch_size, "learning_rate": point.learning_rate}
    attrs: dict[str, Any] = {POINT_ATTR: params}
    if seed is not None:
        attrs[CONFIRM_SEED_ATTR] = seed
    study.enqueue_trial(params, user_attrs=attrs)


def enqueue_untaken(study: optuna.Study, order: list[HParams]) -> int:
    """Enqueue, in ``order``, every point that no trial has taken yet; return how many."""
    taken = {claimed_point(t) for t in grid_trials(study)}
    todo = [p for p in order if p not in taken]
    for point in todo:
        enqueue_point(study, point)
    return len(todo)


# --- which trial trains which point -------------------------------------------------------------------

def claimed_point(trial: FrozenTrial) -> HParams | None:
    """The grid point a trial trains: its params, or the point it was enqueued with before it suggests them."""
    return HParams.of_trial(trial.params) or HParams.of_trial(trial.user_attrs.get(POINT_ATTR, {}))


def confirm_seed_of(trial: FrozenTrial) -> int | None:
    """The seed of a confirmation trial; None for a grid trial (which trains with the study's seed)."""
    seed = trial.user_attrs.get(CONFIRM_SEED_ATTR)
    return None if seed is None else int(seed)


def grid_trials(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    """The study's trials of the grid itself (not confirmation trials)."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if CONFIRM_SEED_ATTR not in t.user_attrs]


def is_overflow(number: int, user_attrs: dict[str, Any], space: SearchSpace) -> bool:
    """A trial the sampler made, not the queue, after the first pass: its point would be a random one.

    Only studies made before the queue let the sampler hand out points, and then only trials
    ``0 .. len(space) - 1``; such a trial trains nothing.
    """
    return number >= len(space) and POINT_ATTR not in user_attrs


def owner_of(study: optuna.Study, number: int, point: HParams, seed: int | None = None,
             wait_s: float = 30.0) -> int | None:
    """The number of an earlier trial already running or done for ``point`` (with confirmation ``seed``, for
    that seed), a race between workers.

    An earlier trial that is running but has not said its point yet (a sampler-made trial of an older
    study, created a moment ago) is waited for, up to ``wait_s`` (a worker that died right then costs
    that wait, not a duplicate).
    """
    states = (TrialState.COMPLETE, TrialState.RUNNING)
    deadline = time.monotonic() + wait_s
    while True:
        earlier = [t for t in study.get_trials(deepcopy=False, states=states) if t.number < number]
        for other in earlier:
            if claimed_point(other) == point and confirm_seed_of(other) == seed:
                return other.number
        unknown = [t for t in earlier if t.state == TrialState.RUNNING and claimed_point(t) is None]
        if not unknown or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


# --- where each point stands --------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialResult:
    """What a finished trial recorded: its point, the objective (the study's ``--metric`` on dev, macro-F1 by
    default) and the other dev metrics."""

    number: int
    point: HParams
    value: float  # the objective: the study's metric on dev after the last epoch trained
    dev_accuracy: float
    dev_micro_f1: float
    dev_loss: float
    history: tuple[dict[str, float], ...]  # dev metrics after each epoch
    failed_run: str | None = None  # why its model is no better than the majority class (FAILED_RUN_ATTR)

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialResult:
        attrs = trial.user_attrs
        nan = float("nan")

        def number(name: str) -> float:
            value = attrs.get(name)
            return nan if value is None else float(value)

        return cls(trial.number, HParams.from_params(trial.params),
                   nan if trial.value is None else float(trial.value), number(DEV_ACCURACY_ATTR),
                   number(DEV_MICRO_F1_ATTR), number(DEV_LOSS_ATTR), tuple(attrs.get(HISTORY_ATTR) or ()),
                   attrs.get(FAILED_RUN_ATTR))

    def rank_key(self) -> tuple[bool, float, float, int, float]:
        """Sorts the better first: a run that did not fail, higher dev F1, lower dev loss, smaller batch
        size, smaller learning rate (ties are common on small dev sets; the order trials ran in never
        decides)."""
        loss = math.inf if math.isnan(self.dev_loss) else self.dev_loss
        return (self.failed_run is not None, -self.value, loss, self.point.batch_size, self.point.learning_rate)


@dataclass(frozen=True)
class PointStatus:
    """One grid point: ``state`` is COMPLETE, PRUNED, RUNNING, FAIL, INFEASIBLE or PENDING; ``queued`` while a trial
    waits for it; ``result`` is its COMPLETE trial's; ``errors`` says why each failed try failed."""

    point: HParams
    state: str
    result: TrialResult | None
    errors: tuple[str, ...]
    queued: bool = False
    pruned: tuple[int, float] | None = None  # a PRUNED point's last epoch and its dev score there

    @property
    def finished(self) -> bool:
        """COMPLETE, stopped early by a pruner, or INFEASIBLE (out of memory at micro-batch 1): not trained
        again."""
        return self.state in FINISHED


FINISHED = ("COMPLETE", "PRUNED", "INFEASIBLE")  # states whose point is never trained again


@dataclass(frozen=True)
class Attempts:
    """What the trials of one grid point, or of one (point, seed) of the confirmation stage, add up to:
    ``state`` as ``PointStatus``'s, why each failed try failed, whether a trial waits in the queue, and
    the first COMPLETE trial."""

    state: str
    errors: tuple[str, ...]
    queued: bool
    complete: FrozenTrial | None
    pruned: tuple[int, float] | None = None  # the epoch a pruner stopped a try after, and its dev score there

    @classmethod
    def of(cls, mine: list[FrozenTrial]) -> Attempts:
        states = {t.state for t in mine}
        errors = tuple(str(t.user_attrs[ERROR_ATTR]) for t in mine
                       if t.state == TrialState.FAIL and ERROR_ATTR in t.user_attrs)
        # a try that ran out of memory even one example at a time: the point does not fit, retrying cannot help
        infeasible = any(t.state == TrialState.FAIL and INFEASIBLE_ATTR in t.user_attrs for t in mine)
        state = next((name for kind, name in ((TrialState.COMPLETE, "COMPLETE"), (TrialState.PRUNED, "PRUNED"),
                                              (TrialState.RUNNING, "RUNNING")) if kind in states),
                     "INFEASIBLE" if infeasible else "FAIL" if errors else "PENDING")
        complete = [t for t in mine if t.state == TrialState.COMPLETE]
        stopped = [(int(t.user_attrs.get(PRUNED_AFTER_ATTR, max(t.intermediate_values, default=0))),
                    float("nan") if t.value is None else float(t.value))
                   for t in mine if t.state == TrialState.PRUNED and DUPLICATE_ATTR not in t.user_attrs]
        return cls(state, errors, TrialState.WAITING in states,
                   min(complete, key=lambda t: t.number) if complete else None, stopped[0] if stopped else None)


def point_status(study: optuna.Study, space: SearchSpace) -> list[PointStatus]:
    """The state of every grid point, in grid order (duplicates of a taken point and confirmation trials
    are ignored)."""
    trials = [t for t in grid_trials(study) if DUPLICATE_ATTR not in t.user_attrs]
    out = []
    for point in space.points():
        tries = Attempts.of([t for t in trials if claimed_point(t) == point])
        out.append(PointStatus(point, tries.state, TrialResult.of(tries.complete) if tries.complete else None,
                               tries.errors, queued=tries.queued, pruned=tries.pruned))
    return out


def next_point(study: optuna.Study, space: SearchSpace, max_retries: int) -> TrainQueued | TrainPoint | Done:
    """The grid's next step: a queued trial, a point to enqueue (never trained, or failed with retries
    left), or ``Done`` when every point is finished or given up."""
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return TrainQueued()
    for status in point_status(study, space):
        if status.state in ("FAIL", "PENDING") and len(status.errors) <= max_retries:
            return TrainPoint(status.point)
    return Done()


def incomplete_grid(study: optuna.Study, space: SearchSpace) -> str | None:
    """Which grid points have no result, in words (None: every point has one)."""
    missing = [p for p in point_status(study, space) if p.state not in ("COMPLETE", "PRUNED")]
    if not missing:
        return None
    listed = "; ".join(f"{p.point.batch_size} {p.point.learning_rate:g} ({p.state.lower()})" for p in missing)
    return f"{len(missing)} of {len(space)} points have no result ({listed})"


def recover_interrupted(study: optuna.Study, *, alone: bool) -> list[int]:
    """Fail RUNNING trials of dead workers so their points are retried; return their numbers.

    ``alone``: no other process uses this study (``storage.local_study_lock``), so every RUNNING trial
    is a dead one. Otherwise only those whose heartbeat stopped a grace period ago.
    """
    if alone:
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in stale:
            study.tell(t.number, state=TrialState.FAIL)
        return [t.number for t in stale]
    fail_stale_trials(study)
    return []
