"""Which grid point is best, and how sure that is: the one answer ``tune``, ``train``, ``report``, ``studies``
and the Python API all give.

Without the confirmation stage (or before it has finished) the best point is the best single grid trial
(``TrialResult.rank_key``: failed runs last, then dev F1, dev loss, batch size, learning rate). Once the
stage has finished, it is the confirmed point with the best **mean dev F1 over its seeds** (the grid's
seed and the confirmation seeds; a failed run counts with its F1). Ties go by the same rule applied to
the points' grid trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna

from optuna_seqclf.settings import HParams
from optuna_seqclf.study.confirm import ConfirmPlan, SeedRun, candidates, grid_settled, pending_runs, seed_runs
from optuna_seqclf.study.queue import TrialResult, grid_trials, point_status
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.summary import MetricSummary


@dataclass(frozen=True)
class ConfirmedPoint:
    """A confirmed grid point: its grid trial and its confirmation runs that completed."""

    grid: TrialResult
    runs: tuple[SeedRun, ...]
    study_seed: int

    @property
    def point(self) -> HParams:
        return self.grid.point

    @property
    def seeds(self) -> tuple[int, ...]:
        return (self.study_seed, *(r.seed for r in self.runs))

    @property
    def values(self) -> tuple[float, ...]:
        return (self.grid.value, *(float(r.value) for r in self.runs if r.value is not None))

    @property
    def failed_runs(self) -> int:
        return (self.grid.failed_run is not None) + sum(r.failed_run is not None for r in self.runs)

    @property
    def summary(self) -> MetricSummary:
        """Mean, std and 95% interval of its values over seeds (the study's metric on dev)."""
        return MetricSummary.of(self.values)

    @property
    def dev_f1(self) -> MetricSummary:
        """The same as ``summary``: the name before ``--metric`` (kept for callers of 0.4)."""
        return self.summary

    def to_json(self) -> dict[str, Any]:
        m = self.summary
        return {"batch_size": self.point.batch_size, "learning_rate": self.point.learning_rate,
                "seeds": list(self.seeds), "dev_f1": list(self.values), "mean": m.mean, "std": m.std,
                "ci95": list(m.ci95), "failed_runs": self.failed_runs}


@dataclass(frozen=True)
class Selection:
    """The chosen point and its evidence.

    ``best`` is the chosen point's grid trial; ``single_seed_best`` the best single grid trial;
    ``confirmed`` the confirmed points, chosen first, once the stage has finished (else empty);
    ``pending`` the confirmation runs still to train; ``all_failed`` when every complete grid point is a
    failed run.
    """

    best: TrialResult | None
    single_seed_best: TrialResult | None
    confirmed: tuple[ConfirmedPoint, ...] = ()
    pending: int = 0
    all_failed: bool = False
    plan: ConfirmPlan = field(default_factory=ConfirmPlan)

    @property
    def point(self) -> HParams | None:
        return self.best.point if self.best is not None else None

    @property
    def rule(self) -> str:
        return "confirmed" if self.confirmed else "single-seed"

    @property
    def value(self) -> float | None:
        """The chosen point's dev score in the study's metric: its mean over seeds when confirmed, else its grid
        trial's."""
        if self.confirmed:
            return self.confirmed[0].summary.mean
        return self.best.value if self.best is not None else None

    @property
    def differs(self) -> bool:
        """The confirmed choice is not the point the single-seed argmax would have chosen."""
        return bool(self.confirmed) and self.single_seed_best is not None and \
            self.single_seed_best.point != self.confirmed[0].point

    @property
    def tied_with(self) -> list[HParams]:
        """Confirmed points whose 95% interval of the mean dev score overlaps the chosen point's."""
        if len(self.confirmed) < 2:
            return []
        low, _ = self.confirmed[0].summary.ci95
        return [c.point for c in self.confirmed[1:] if c.summary.ci95[1] >= low]

    def to_json(self) -> dict[str, Any]:
        def point(p: HParams | None) -> dict[str, Any] | None:
            return None if p is None else {"batch_size": p.batch_size, "learning_rate": p.learning_rate}

        return {"rule": self.rule, "point": point(self.point), "dev_f1": self.value,
                "best_trial": None if self.best is None else self.best.number,
                "single_seed_best": point(self.single_seed_best.point if self.single_seed_best else None),
                "confirm_top": self.plan.top, "confirm_seeds": list(self.plan.seeds), "pending": self.pending,
                "confirmed": [c.to_json() for c in self.confirmed], "all_failed": self.all_failed,
                "tied_with": [point(p) for p in self.tied_with]}


def best_grid_trial(study: optuna.Study) -> TrialResult | None:
    """The best single COMPLETE grid trial by ``TrialResult.rank_key`` (never a failed run while another
    exists); without ties or failed runs this is ``study.best_trial``."""
    complete = [TrialResult.of(t) for t in grid_trials(study, states=(optuna.trial.TrialState.COMPLETE,))
                if t.value is not None and not math.isnan(t.value)]
    return min(complete, key=TrialResult.rank_key) if complete else None


def select(study: optuna.Study, max_retries: int | None = None) -> Selection:
    """The study's best point and the evidence for it (``max_retries``: when a failed run is given up;
    default: the study's, as its last ``tune`` recorded it)."""
    record = StudyRecord.from_study(study)
    max_retries = record.max_retries if max_retries is None else max_retries
    plan = record.confirm_plan()
    single = best_grid_trial(study)
    all_failed = single is not None and single.failed_run is not None
    points = point_status(study, record.space)
    chosen = candidates(points, plan) if grid_settled(points, max_retries) else []
    if not chosen:
        return Selection(single, single, (), 0, all_failed, plan)
    runs = seed_runs(study, chosen, plan)
    pending = pending_runs(runs, max_retries)
    if pending:
        return Selection(single, single, (), pending, all_failed, plan)
    confirmed = [ConfirmedPoint(grid, tuple(r for r in runs if r.point == grid.point and r.value is not None),
                                record.settings.seed) for grid in chosen]
    confirmed.sort(key=lambda c: (-c.dev_f1.mean, *c.grid.rank_key()[2:]))
    return Selection(confirmed[0].grid, single, tuple(confirmed), 0, all_failed, plan)
