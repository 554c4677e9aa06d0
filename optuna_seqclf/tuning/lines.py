"""What ``tune`` says as it goes: the plan, one line per trial, the trials left to other workers."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seqclf.hooks import Progress
from optuna_seqclf.settings import Metric, SearchSpace, StudySpec
from optuna_seqclf.study.confirm import ConfirmPlan
from optuna_seqclf.study.queue import confirm_seed_of, point_status
from optuna_seqclf.study.schema import ERROR_ATTR, FAILED_RUN_ATTR, INFEASIBLE_ATTR, MICRO_BATCH_ATTR, PRUNED_AFTER_ATTR
from optuna_seqclf.tuning.worker import LoopStats


def plan_line(study: optuna.Study, spec: StudySpec, space: SearchSpace, plan: ConfirmPlan, workers: int) -> str:
    todo = sum(1 for p in point_status(study, space) if not p.finished)
    seeds = ", ".join(map(str, plan.seeds))
    doing = (f"training {todo}" + (f"; then the top {plan.top} again with seeds {seeds}" if plan.active else "")
             if todo else f"confirming the top {plan.top} with seeds {seeds}")
    return (f"Study {spec.study_name!r} in {spec.storage}: {len(space) - todo}/{len(space)} points done, {doing}"
            + (f" ({workers} workers)" if workers > 1 else ""))


def say_left_to_others(stats: LoopStats, progress: Progress) -> None:
    if stats.left_to_others:
        progress(f"{len(stats.left_to_others)} trial(s) {stats.left_to_others} are being trained by other workers "
                 "whose heartbeats are live: they will finish them (`optuna-seqclf studies` shows when)")


def trial_line(trial: FrozenTrial, done: int, points: int, eta_s: float, metric: Metric) -> str:
    """``[done/points] trial N: batch size B, learning rate L: <outcome>``."""
    p, seed = trial.params, confirm_seed_of(trial)
    where = f"[{done}/{points}]" if seed is None else "[confirm]"
    head = f"{where} trial {trial.number}: batch size {p.get('batch_size')}, " \
           f"learning rate {p.get('learning_rate'):g}" + ("" if seed is None else f", seed {seed}")
    if trial.state == TrialState.COMPLETE and trial.datetime_complete and trial.datetime_start:
        secs = (trial.datetime_complete - trial.datetime_start).total_seconds()
        failed = trial.user_attrs.get(FAILED_RUN_ATTR)
        eta = f"; ETA {eta_s / 60:.1f} min" if seed is None else ""
        micro = trial.user_attrs.get(MICRO_BATCH_ATTR)
        accumulated = f", micro-batch {micro}" if micro is not None and micro < p.get("batch_size", micro) else ""
        return (f"{head}: dev {metric.short} {trial.value:.4f} ({secs:.1f} s{accumulated}{eta})"
                + (f"; FAILED RUN: {failed}" if failed else ""))
    if trial.state == TrialState.PRUNED:
        value = trial.value if trial.value is not None else float("nan")
        return f"{head}: pruned after epoch {trial.user_attrs.get(PRUNED_AFTER_ATTR)} (dev {metric.short} {value:.4f})"
    if INFEASIBLE_ATTR in trial.user_attrs:
        return f"{head}: INFEASIBLE ({trial.user_attrs[INFEASIBLE_ATTR]}); not retried"
    return f"{head}: {trial.state.name} ({trial.user_attrs.get(ERROR_ATTR, 'no reason recorded')})"
