"""Tables and summaries as strings and dicts. Nothing here prints."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from .replicas import ReplicaResult
    from .study import PointStatus


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial: highest dev macro-F1.

    Ties (common on small dev sets) are broken deterministically, whatever order the trials ran in:
    lower dev loss, then smaller batch size, then smaller learning rate. Without a tie this is
    ``study.best_trial``.
    """
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and not math.isnan(t.value)]
    if not complete:
        return None

    def key(t: FrozenTrial) -> tuple[float, float, int, float]:
        loss = t.user_attrs.get("dev_loss", math.inf)
        loss = math.inf if loss is None or math.isnan(loss) else loss
        return (-float(t.value), float(loss), int(t.params["batch_size"]), float(t.params["learning_rate"]))

    return min(complete, key=key)


def rst_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """An RST-style grid table, as the reference tool prints it."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(ch: str) -> str:
        return "+" + "+".join(ch * (w + 2) for w in widths) + "+"

    def row(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c!s:>{w}} " for c, w in zip(cells, widths)) + "|"

    out = [line("-"), row(header), line("=")]
    for r in rows:
        out += [row(r), line("-")]
    return "\n".join(out)


def grid_table(statuses: Sequence[PointStatus]) -> str:
    """Every grid point: F1-Score (or its state when it has none), BatchSize, LearningRate."""
    rows = []
    for i, st in enumerate(statuses):
        f1 = f"{st.complete.value:.6f}" if st.complete is not None and st.complete.value is not None \
            else st.state.lower()
        rows.append((str(i), f1, str(st.point.batch_size), f"{st.point.learning_rate:g}"))
    return rst_table(rows, ("", "F1-Score", "BatchSize", "LearningRate"))


def replicas_table(results: Sequence[ReplicaResult], summary: dict[str, dict[str, float]]) -> str:
    rows = [(str(r.seed), f"{r.dev_f1:.4f}", f"{r.test_f1:.4f}", f"{r.test_accuracy:.4f}") for r in results]
    mean, std = summary["mean"], summary["std"]
    rows.append(("mean ± std",
                 f"{mean['dev_f1']:.4f} ± {std['dev_f1']:.4f}",
                 f"{mean['test_f1']:.4f} ± {std['test_f1']:.4f}",
                 f"{mean['test_accuracy']:.4f} ± {std['test_accuracy']:.4f}"))
    return rst_table(rows, ("Seed", "Dev F1", "Test F1", "Test Accuracy"))


def summarize(results: Sequence[ReplicaResult]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (n-1; 0 for one replica) of each replica metric."""
    out: dict[str, dict[str, float]] = {"mean": {}, "std": {}}
    for name in ("dev_f1", "test_f1", "test_accuracy"):
        values = [getattr(r, name) for r in results]
        out["mean"][name] = statistics.fmean(values)
        out["std"][name] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out
