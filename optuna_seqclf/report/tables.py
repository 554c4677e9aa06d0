"""Tables as strings, in the reference tool's RST grid style. Nothing here prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from optuna_seqclf.settings import Metric
from optuna_seqclf.training.metrics import ADVICE
from optuna_seqclf.training.outputs import TRIVIAL

if TYPE_CHECKING:
    from optuna_seqclf.replicas import EnsembleResult, ReplicaResult
    from optuna_seqclf.settings import HParams
    from optuna_seqclf.study.queue import PointStatus
    from optuna_seqclf.study.selection import Selection
    from optuna_seqclf.summary import MetricSummary, Summary


MACRO_F1 = Metric("macro-f1")


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


def grid_table(statuses: Sequence[PointStatus], selection: Selection | None = None, metric: Metric = MACRO_F1) -> str:
    """Every grid point: F1-Score (the reference's name for macro-F1; another ``metric`` by its name) or its state
    when it has none, BatchSize, LearningRate; and a Notes column when a point is a failed run, was confirmed
    over seeds (mean ± std) or is the chosen one."""
    score = "F1-Score" if metric == MACRO_F1 else metric.label[0].upper() + metric.label[1:]
    confirmed = {c.point: c for c in selection.confirmed} if selection is not None else {}
    rows = []
    for i, st in enumerate(statuses):
        f1 = f"{st.result.value:.6f}" if st.result is not None else st.state.lower()
        if st.pruned is not None:  # stopped early: its last dev score, and when
            f1 = f"{st.pruned[1]:.6f} (pruned after epoch {st.pruned[0]})"
        notes = []
        if st.result is not None and st.result.failed_run is not None:
            notes.append("failed run")
        if st.point in confirmed:
            c = confirmed[st.point]
            notes.append(f"{len(c.values)} seeds: {mean_std(c.summary)}")
        if selection is not None and selection.confirmed and selection.point == st.point:
            notes.append("chosen")  # without the stage, the chosen point is the best F1: no note needed
        rows.append((str(i), f1, str(st.point.batch_size), f"{st.point.learning_rate:g}", "; ".join(notes)))
    if not any(row[-1] for row in rows):
        return rst_table([row[:-1] for row in rows], ("", score, "BatchSize", "LearningRate"))
    return rst_table(rows, ("", score, "BatchSize", "LearningRate", "Notes"))


def _point(p: HParams) -> str:
    return f"batch size {p.batch_size}, learning rate {p.learning_rate:g}"


def selection_notes(selection: Selection, points: Sequence[PointStatus], metric: Metric = MACRO_F1,
                    task: str = "single-label") -> list[str]:
    """What a user should know about the choice: confirmation, ties, failed runs, unfinished work."""
    notes = []
    failed = sum(1 for p in points if p.result is not None and p.result.failed_run is not None)
    if selection.all_failed:
        notes.append(f"Every complete grid point is a failed run: no model did better than {TRIVIAL[task]} on "
                     f"dev. The study is kept; {ADVICE}.")
    elif failed:
        notes.append(f"{failed} grid point(s) are failed runs (no better than {TRIVIAL[task]} on dev); "
                     "they are never chosen while another point exists.")
    if selection.confirmed:
        top = selection.confirmed[0]
        low, high = top.summary.ci95
        notes.append(f"Confirmed over seeds {','.join(map(str, top.seeds))}: mean dev {metric.short} "
                     f"{mean_std(top.summary)} "
                     f"(95% interval {low:.4f} to {high:.4f}).")
        single = selection.single_seed_best
        if selection.differs and single is not None:
            notes.append(f"The confirmed choice differs from the single-seed best ({_point(single.point)}, "
                         f"dev {metric.short} {single.value:.4f}).")
        if selection.tied_with:
            notes.append("It cannot be told apart from " + "; ".join(_point(p) for p in selection.tied_with)
                         + f" (their 95% intervals of mean dev {metric.short} overlap).")
    elif selection.pending:
        notes.append(f"The confirmation stage is not finished ({selection.pending} run(s) left): the choice is the "
                     "single-seed best for now; run `tune` again to finish it.")
    elif selection.best is not None:
        notes.append(f"Chosen by the grid's single seed (dev {metric.short} of one run per point)"
                     + ("" if selection.plan.active else "; --confirm-top K confirms the best K over more seeds")
                     + ".")
    return notes


def mean_std(m: MetricSummary) -> str:
    return f"{m.mean:.4f} ± {m.std:.4f}"


def replicas_table(results: Sequence[ReplicaResult], summary: Summary, ensemble: EnsembleResult | None = None,
                   summary_all: Summary | None = None) -> str:
    """One row per seed (the task's columns, ``summary.COLUMNS``: dev F1, test F1, test accuracy for
    single-label), their mean ± std, and their ensemble's scores.

    Failed runs are marked; with ``summary_all`` (some failed) both means are shown: without and with them.
    """
    columns = summary.columns
    rows = [(f"{r.seed} (failed run)" if r.failed_run else str(r.seed), *(f"{r.scores[c]:.4f}" for c in columns))
            for r in results]
    label = "mean ± std" if summary_all is None else "mean ± std, without failed"
    rows.append((label, *(mean_std(summary[c]) for c in columns)))
    if summary_all is not None:
        rows.append(("mean ± std, all seeds", *(mean_std(summary_all[c]) for c in columns)))
    if ensemble is not None:
        rows.append(("ensemble", *(f"{ensemble.scores[c]:.4f}" for c in columns)))
    return rst_table(rows, ("Seed", *summary.headers))


def confusion_table(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """Rows: the true label; columns: the predicted one."""
    rows = [(f"true {name}", *(str(c) for c in row)) for name, row in zip(labels, matrix)]
    return rst_table(rows, ("", *(f"predicted {name}" for name in labels)))
