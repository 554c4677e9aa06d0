"""The confirmation stage: the top grid points trained again with more seeds, each (point, seed) once.

A single seed's dev F1 picks among points that are often statistically tied (seeds alone move BERT's
scores by points: Dodge et al. 2020). So once the grid is settled, the ``top`` best COMPLETE points that
are not failed runs are each trained again with ``seeds`` (the study's seed + 1, + 2, ...), and
``selection`` chooses by the mean dev F1 over every seed of a point.

The stage follows the grid's exactly-once protocol (``study.queue``): each (point, seed) is a queued trial
labelled with its point and ``CONFIRM_SEED_ATTR``; a claim checks no earlier trial took the same
(point, seed); a failed try is retried up to ``max_retries`` times. Which points are confirmed is a
function of the settled grid's trials only, so every worker computes the same list; a worker that finds
grid points still running waits for them (their trials may change the list).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna

from optuna_seqclf.settings import HParams
from optuna_seqclf.study.queue import Attempts, PointStatus, TrialResult, claimed_point, confirm_seed_of
from optuna_seqclf.study.schema import DUPLICATE_ATTR, FAILED_RUN_ATTR
from optuna_seqclf.study.steps import Done, TrainPoint, Wait


@dataclass(frozen=True)
class ConfirmPlan:
    """Confirm the ``top`` best grid points with each of ``seeds``; ``top`` 0 turns the stage off."""

    top: int = 0
    seeds: tuple[int, ...] = ()

    @classmethod
    def of(cls, top: int, more_seeds: int, study_seed: int) -> ConfirmPlan:
        return cls(top, tuple(study_seed + i for i in range(1, more_seeds + 1)))

    @property
    def active(self) -> bool:
        return self.top > 0 and bool(self.seeds)


@dataclass(frozen=True)
class SeedRun:
    """One (point, seed) of the stage: ``state`` as a grid point's; ``value`` its dev F1 once COMPLETE."""

    point: HParams
    seed: int
    state: str
    value: float | None
    failed_run: str | None
    errors: tuple[str, ...]
    queued: bool = False


def candidates(points: Sequence[PointStatus], plan: ConfirmPlan) -> list[TrialResult]:
    """The grid points to confirm, best first: the ``top`` COMPLETE ones that are not failed runs.

    Pruned points are never confirmed. Fewer than two candidates leave nothing to choose between,
    so then the stage has nothing to do.
    """
    if not plan.active:
        return []
    complete = [p.result for p in points
                if p.state == "COMPLETE" and p.result is not None and p.result.failed_run is None
                and not math.isnan(p.result.value)]
    ranked = sorted(complete, key=TrialResult.rank_key)[:plan.top]
    return ranked if len(ranked) >= 2 else []


def grid_settled(points: Sequence[PointStatus], max_retries: int) -> bool:
    """Every grid point is COMPLETE, pruned, or given up after ``max_retries`` retries."""
    return all(p.finished or (p.state == "FAIL" and len(p.errors) > max_retries and not p.queued)
               for p in points)


def seed_runs(study: optuna.Study, chosen: Sequence[TrialResult], plan: ConfirmPlan) -> list[SeedRun]:
    """Where each (point, seed) of the stage stands, point by point in ``chosen``'s order."""
    trials = [t for t in study.get_trials(deepcopy=False)
              if confirm_seed_of(t) is not None and DUPLICATE_ATTR not in t.user_attrs]
    runs = []
    for result in chosen:
        for seed in plan.seeds:
            tries = Attempts.of([t for t in trials if confirm_seed_of(t) == seed and claimed_point(t) == result.point])
            done = tries.complete
            runs.append(SeedRun(result.point, seed, tries.state, None if done is None else done.value,
                                None if done is None else done.user_attrs.get(FAILED_RUN_ATTR), tries.errors,
                                tries.queued))
    return runs


def next_confirmation(study: optuna.Study, points: Sequence[PointStatus], plan: ConfirmPlan,
                      max_retries: int) -> TrainPoint | Wait | Done:
    """The (point, seed) to enqueue and train next; ``Wait`` while grid points run elsewhere."""
    if not plan.active:
        return Done()
    if not grid_settled(points, max_retries):
        return Wait() if any(p.state == "RUNNING" for p in points) else Done()
    for run in seed_runs(study, candidates(points, plan), plan):
        if run.state in ("FAIL", "PENDING") and len(run.errors) <= max_retries and not run.queued:
            return TrainPoint(run.point, run.seed)
    return Done()


def pending_runs(runs: Sequence[SeedRun], max_retries: int) -> int:
    """Runs of the stage not finished yet (given-up runs count as finished)."""
    return sum(1 for r in runs if r.state not in ("COMPLETE", "INFEASIBLE")
               and not (r.state == "FAIL" and len(r.errors) > max_retries))
