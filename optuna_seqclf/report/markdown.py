"""What studies hold: the ``studies`` listing and the ``report`` folder (report.md and PNG plots)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from optuna_seqclf.errors import OutputError, StudyError, redact
from optuna_seqclf.hooks import Progress, silent
from optuna_seqclf.report import plots
from optuna_seqclf.report.budget import BudgetCurve, budget_curve
from optuna_seqclf.report.tables import grid_table, mean_std, rst_table, selection_notes
from optuna_seqclf.settings import HParams, TrainSettings, check_name
from optuna_seqclf.study.queue import PointStatus, point_status
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.schema import COMMAND_CONFIG_ATTR, DEV_CLASS_F1_ATTR, REPLICAS_ATTR, TRACKING_ATTR
from optuna_seqclf.study.selection import Selection, select
from optuna_seqclf.study.storage import load_study, open_storage
from optuna_seqclf.summary import Summary
from optuna_seqclf.tracking.mlflow_server import attach_to_study_run


@dataclass(frozen=True)
class StudyOverview:
    name: str
    storage: str
    points: int
    complete: int
    failed: int
    running: int
    pruned: int
    best: HParams | None
    best_value: float | None  # mean over seeds when confirmed
    failed_runs: int = 0  # grid points whose model is no better than the majority class
    confirmed_seeds: int = 0  # seeds behind best_value (0: a single grid trial)
    metric: str = "F1"  # what best_value is: the study's --metric (F1: macro-F1)
    infeasible: int = 0  # grid points out of memory even at micro-batch 1


def _overview(study: optuna.Study, storage_url: str) -> StudyOverview:
    try:
        record = StudyRecord.from_study(study)
    except StudyError:  # not ours: count its trials as they are
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(done, key=lambda t: t.value or -math.inf) if done else None
        return StudyOverview(study.study_name, storage_url, len(trials), len(done),
                             sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
                             sum(t.state == optuna.trial.TrialState.RUNNING for t in trials), 0,
                             None, best.value if best else None)
    points = point_status(study, record.space)
    selection = select(study)

    def count(state: str) -> int:
        return sum(p.state == state for p in points)

    failed_runs = sum(1 for p in points if p.result is not None and p.result.failed_run is not None)
    seeds = len(selection.confirmed[0].values) if selection.confirmed else 0
    return StudyOverview(study.study_name, storage_url, len(points), count("COMPLETE"), count("FAIL"),
                         count("RUNNING"), count("PRUNED"), selection.point, selection.value, failed_runs, seeds,
                         record.objective.short, count("INFEASIBLE"))


def list_studies(storage_urls: list[str]) -> list[StudyOverview]:
    """Every study in each storage, in name order."""
    out = []
    for url in storage_urls:
        storage = open_storage(url, must_exist=True)
        for summary in sorted(optuna.get_all_study_summaries(storage=storage), key=lambda s: s.study_name):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            out.append(_overview(study, redact(url)))
    return out


def studies_table(overviews: list[StudyOverview]) -> str:
    rows = [(o.name, f"{o.complete}/{o.points}", str(o.failed) + (f" + {o.infeasible} infeasible" if o.infeasible
                                                                   else ""), str(o.failed_runs), str(o.running),
             "-" if o.best_value is None else f"{o.best_value:.4f}" + ("" if o.metric == "F1" else f" {o.metric}")
             + (f" ({o.confirmed_seeds} seeds)" if o.confirmed_seeds else ""),
             "-" if o.best is None else f"{o.best.batch_size} {o.best.learning_rate:g}", o.storage)
            for o in overviews]
    # the best value is the study's metric on dev, named after it unless it is macro-F1 ("F1", the reference's)
    return rst_table(rows, ("Study", "Done", "Failed", "Failed runs", "Running", "Best dev", "Best (bs lr)",
                            "Storage"))


# --- report ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    markdown: Path
    figures: list[Path]
    tracked_in: str | None = None  # the MLflow run (the study's) that keeps them too


def _learning_curves(points: list[PointStatus]) -> dict[HParams, list[dict[str, float]]]:
    return {p.point: list(p.result.history) for p in points if p.result is not None and p.result.history}


def write_report(study_name: str, storage_url: str, output_dir: Path, warn: Progress = silent) -> Report:
    """``report.md`` and its plots for one study, in ``output_dir``; kept in the study's MLflow run too when it was
    tuned with MLflow (``warn`` hears why they could not be)."""
    check_name(study_name, "study name")
    study = load_study(study_name, open_storage(storage_url, must_exist=True), storage_url)
    record = StudyRecord.from_study(study)
    points = point_status(study, record.space)
    selection = select(study)
    replicas = study.user_attrs.get(REPLICAS_ATTR)
    if replicas:  # the mean shown beside the replicas leaves failed runs out, as `train` prints it
        summary = Summary.of([r for r in replicas["replicas"] if not r.get("failed_run")] or replicas["replicas"],
                             replicas.get("task", "single-label"))
    else:
        summary = None
    scores = [p.result.value for p in points if p.state == "COMPLETE" and p.result is not None]
    budget = budget_curve(scores) if len(scores) >= 2 else None
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        metric = f"dev {record.objective.label}"
        figures = [plots.heatmap(points, selection.point, output_dir / "grid_heatmap.png", study_name, metric)]
        if selection.confirmed:
            figures.append(plots.confirmation(selection.confirmed, output_dir / "confirmation.png", study_name,
                                              metric))
        if budget is not None:
            figures.append(plots.expected_best(budget, output_dir / "expected_best.png", study_name, metric))
        curves = _learning_curves(points)
        if curves:
            loss = {"single-label": "cross-entropy", "multi-label": "BCE", "regression": "MSE"}[record.settings.task]
            figures.append(plots.learning_curves(curves, output_dir / "learning_curves.png", study_name,
                                                 record.objective.key, metric, f"dev {loss} loss"))
        if replicas and summary:
            test = summary.columns[1]
            figures.append(plots.replicas([r["seed"] for r in replicas["replicas"]],
                                          [r[test] for r in replicas["replicas"]], summary.test,
                                          output_dir / "replicas_test_f1.png", study_name,
                                          summary.headers[1].replace("Test F1", "Test macro-F1")))
        markdown = output_dir / "report.md"
        text = _markdown(study_name, storage_url, record, points, selection, budget, bool(curves), replicas, summary,
                         _class_f1(study, selection), study.user_attrs.get(COMMAND_CONFIG_ATTR))
        tmp = markdown.with_name(f".{markdown.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, markdown)
    except OSError as exc:
        raise OutputError(f"{output_dir}: report cannot be written ({exc.strerror or exc})") from None
    where = study.user_attrs.get(TRACKING_ATTR)
    if where is None or not attach_to_study_run(where, [markdown, *figures], "report", warn):
        return Report(markdown, figures)
    return Report(markdown, figures, f"{where['run_id']} ({where['uri']})")


def _class_f1(study: optuna.Study, selection: Selection) -> dict[str, float]:
    """The chosen grid trial's dev F1 of each class (studies tuned before 0.4 did not record it)."""
    if selection.best is None:
        return {}
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == selection.best.number)
    return dict(trial.user_attrs.get(DEV_CLASS_F1_ATTR, {}))


def _markdown(study_name: str, storage_url: str, record: StudyRecord, points: list[PointStatus],
              selection: Selection, budget: BudgetCurve | None, curves: bool, replicas: dict[str, Any] | None,
              summary: Summary | None, class_f1: dict[str, float], command_config: str | None) -> str:
    s = record.settings
    metric = record.objective

    def count(*states: str) -> int:
        return sum(p.state in states for p in points)

    lines = [
        f"# Study `{study_name}`", "",
        f"- Storage: `{redact(storage_url)}`",
        f"- Data: `{record.data.data_dir}`; model: `{s.model}`"
        + (f"; tokenizer `{s.tokenizer}`" if s.tokenizer else ""),
        f"- Training: {_training(s)}; objective: dev {metric.label}",
        f"- Grid: {len(points)} points, {count('COMPLETE')} complete, {count('FAIL')} failed, "
        + (f"{count('INFEASIBLE')} infeasible (out of memory at micro-batch 1), " if count("INFEASIBLE") else "")
        + f"{count('PRUNED')} pruned, {count('PENDING', 'RUNNING')} not finished",
    ]
    best = selection.best
    if best is not None:
        lines.append(f"- **Best configuration: batch size {best.point.batch_size}, learning rate "
                     f"{best.point.learning_rate:g}** (trial {best.number}, dev {metric.label} {best.value:.4f}"
                     + ("" if math.isnan(best.dev_accuracy) or metric.key == "accuracy"
                        else f", dev accuracy {best.dev_accuracy:.4f}")
                     + f"; chosen by {selection.rule} dev {metric.short})")
    if class_f1:
        lines.append("- Its dev F1 per class: " + ", ".join(f"{name} {f1:.4f}" for name, f1 in class_f1.items()))
    lines += [*(f"- {note}" for note in selection_notes(selection, points, metric, s.task)),
              "", "## Grid", "", f"![dev {metric.label} per grid point](grid_heatmap.png)", "", "```",
              grid_table(points, selection, metric), "```", ""]
    if selection.confirmed:
        lines += _confirmation_markdown(selection, metric.label)
    if budget is not None:
        lines += _budget_markdown(budget, len(points), metric.label)
    failed = [p for p in points if p.errors and p.result is None]
    if failed:
        lines += ["Failed points:", ""] + [
            f"- batch size {p.point.batch_size}, learning rate {p.point.learning_rate:g}: {p.errors[-1]}"
            for p in failed] + [""]
    if curves:
        lines += ["## Learning curves", "", "![learning curves](learning_curves.png)", ""]
    if replicas and summary:
        lines += _replicas_markdown(replicas, summary)
    if command_config:
        lines += ["## Configuration", "", "The options of the last `tune`/`run` on this study, as a file "
                  "`--config` reads back:", "", "```toml", command_config.rstrip(), "```", ""]
    return "\n".join(lines)


def _training(s: TrainSettings) -> str:
    """``4 epoch(s), max length 128, grouped-shuffled batches, seed 1`` (and LoRA's settings)."""
    lora = s.lora
    return (f"{s.epochs:g} epoch(s)" + (f" / {s.max_steps} steps" if s.max_steps else "")
            + f", max length {s.max_seq_length}, {s.batching} batches, seed {s.seed}"
            + ("" if lora is None else f", LoRA rank {lora.rank} alpha {lora.alpha} dropout {lora.dropout:g}"
               + (f" on {','.join(lora.targets)}" if lora.targets else "")))


def _confirmation_markdown(selection: Selection, metric: str) -> list[str]:
    lines = ["## Confirmation over seeds", "",
             f"The top {len(selection.confirmed)} grid points trained again with seeds "
             f"{', '.join(map(str, selection.plan.seeds))}; chosen by mean dev {metric}.", "",
             f"| Batch size | Learning rate | Dev {metric} per seed | Mean ± std | 95% interval | Failed runs |",
             "|---:|---:|---|---:|---|---:|"]
    for c in selection.confirmed:
        per_seed = ", ".join(f"{seed}: {value:.4f}" for seed, value in zip(c.seeds, c.values))
        low, high = c.summary.ci95
        lines.append(f"| {c.point.batch_size} | {c.point.learning_rate:g} | {per_seed} | {mean_std(c.summary)} | "
                     f"[{low:.4f}, {high:.4f}] | {c.failed_runs} |")
    return [*lines, "", "![confirmed points per seed](confirmation.png)", ""]


def _budget_markdown(budget: BudgetCurve, grid_size: int, metric: str) -> list[str]:
    """The expected best at a few budgets: enough to see whether a smaller grid would have done."""
    n = len(budget.expected)
    shown = sorted({k for k in (1, 2, 3, 5, 8, 12, 18, 24, 36, n) if k <= n})
    lines = ["## Expected best vs budget", "",
             f"Expected best dev {metric} of k grid trials drawn at random from the {n} complete of {grid_size} "
             "(unbiased estimator, Tang et al. 2020; 95% bootstrap band):", "",
             "| Trials | Expected best | 95% band |", "|---:|---:|---|"]
    lines += [f"| {k} | {budget.expected[k - 1]:.4f} | [{budget.low[k - 1]:.4f}, {budget.high[k - 1]:.4f}] |"
              for k in shown]
    return [*lines, "", "![expected best vs budget](expected_best.png)", ""]


def _replicas_markdown(replicas: dict[str, Any], summary: Summary) -> list[str]:
    rows, columns = replicas["replicas"], summary.columns
    ci = summary.test.ci95
    lines = ["## Replicas", "", f"Folder: `{replicas['output_dir']}`", "",
             "| Seed | " + " | ".join(summary.headers) + " |", "|---:|" + "---:|" * len(columns)]
    lines += [f"| {r['seed']}{' (failed run)' if r.get('failed_run') else ''} | "
              + " | ".join(f"{r[c]:.4f}" for c in columns) + " |" for r in rows]
    lines += ["| mean ± std | " + " | ".join(mean_std(summary[c]) for c in columns) + " |", "",
              f"{summary.headers[1]}: mean {summary.test.mean:.4f}, 95% confidence interval of the mean "
              f"[{ci[0]:.4f}, {ci[1]:.4f}] (Student's t, {len(rows) - 1} degrees of freedom).", ""]
    ensemble = replicas.get("ensemble")
    if ensemble:  # studies trained before ensembles were scored have none
        how = "their scores averaged" if summary.task == "regression" else "their probabilities averaged"
        lines += [f"Ensemble of the {len(ensemble['seeds'])} replicas ({how}): "
                  + ", ".join(f"{(header[0].lower() + header[1:]).replace('Accuracy', 'accuracy')} {ensemble[c]:.4f}"
                             for c, header in zip(columns, summary.headers))
                  + ".", ""]
    return [*lines, "![replicas](replicas_test_f1.png)", ""]
