"""Tables as strings, in the reference tool's RST grid style. Nothing here prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .grid import PointStatus
    from .replicas import EnsembleResult, ReplicaResult
    from .summary import MetricSummary, Summary


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
        f1 = f"{st.result.value:.6f}" if st.result is not None else st.state.lower()
        rows.append((str(i), f1, str(st.point.batch_size), f"{st.point.learning_rate:g}"))
    return rst_table(rows, ("", "F1-Score", "BatchSize", "LearningRate"))


def mean_std(m: MetricSummary) -> str:
    return f"{m.mean:.4f} ± {m.std:.4f}"


def replicas_table(results: Sequence[ReplicaResult], summary: Summary, ensemble: EnsembleResult | None = None) -> str:
    """One row per seed (dev F1, test F1, test accuracy), their mean ± std, and their ensemble's scores."""
    rows = [(str(r.seed), f"{r.dev_f1:.4f}", f"{r.test_f1:.4f}", f"{r.test_accuracy:.4f}") for r in results]
    rows.append(("mean ± std", mean_std(summary.dev_f1), mean_std(summary.test_f1), mean_std(summary.test_accuracy)))
    if ensemble is not None:
        rows.append(("ensemble", f"{ensemble.dev_f1:.4f}", f"{ensemble.test_f1:.4f}", f"{ensemble.test_accuracy:.4f}"))
    return rst_table(rows, ("Seed", "Dev F1", "Test F1", "Test Accuracy"))


def confusion_table(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """Rows: the true label; columns: the predicted one."""
    rows = [(f"true {name}", *(str(c) for c in row)) for name, row in zip(labels, matrix)]
    return rst_table(rows, ("", *(f"predicted {name}" for name in labels)))
