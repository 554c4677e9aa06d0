"""What studies hold: the ``studies`` listing and the ``report`` folder (report.md and PNG plots)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from . import plots
from .config import HParams, check_name
from .errors import OutputError, StudyError
from .grid import REPLICAS_ATTR, PointStatus, TrialResult, point_status
from .storage import open_storage, redact
from .study import StudyRecord, best_trial, load_study
from .summary import Summary
from .tables import grid_table, mean_std, rst_table


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
    best_f1: float | None


def _overview(study: optuna.Study, storage_url: str) -> StudyOverview:
    try:
        space = StudyRecord.from_study(study).space
    except StudyError:  # not ours: count its trials as they are
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(done, key=lambda t: t.value or -math.inf) if done else None
        return StudyOverview(study.study_name, storage_url, len(trials), len(done),
                             sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
                             sum(t.state == optuna.trial.TrialState.RUNNING for t in trials), 0,
                             None, best.value if best else None)
    points = point_status(study, space)
    best_t = best_trial(study)

    def count(state: str) -> int:
        return sum(p.state == state for p in points)

    return StudyOverview(study.study_name, storage_url, len(points), count("COMPLETE"), count("FAIL"),
                         count("RUNNING"), count("PRUNED"), best_t.point if best_t else None,
                         best_t.value if best_t else None)


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
    rows = [(o.name, f"{o.complete}/{o.points}", str(o.failed), str(o.running),
             "-" if o.best_f1 is None else f"{o.best_f1:.4f}",
             "-" if o.best is None else f"{o.best.batch_size} {o.best.learning_rate:g}", o.storage)
            for o in overviews]
    return rst_table(rows, ("Study", "Done", "Failed", "Running", "Best F1", "Best (bs lr)", "Storage"))


# --- report ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    markdown: Path
    figures: list[Path]


def _learning_curves(points: list[PointStatus]) -> dict[HParams, list[dict[str, float]]]:
    return {p.point: list(p.result.history) for p in points if p.result is not None and p.result.history}


def write_report(study_name: str, storage_url: str, output_dir: Path) -> Report:
    """``report.md`` and its plots for one study, in ``output_dir``."""
    check_name(study_name, "study name")
    study = load_study(study_name, open_storage(storage_url, must_exist=True), storage_url)
    record = StudyRecord.from_study(study)
    points = point_status(study, record.space)
    best = best_trial(study)
    replicas = study.user_attrs.get(REPLICAS_ATTR)
    summary = Summary.of(replicas["replicas"]) if replicas else None
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        figures = [plots.heatmap(points, best.point if best else None, output_dir / "grid_heatmap.png", study_name)]
        curves = _learning_curves(points)
        if curves:
            figures.append(plots.learning_curves(curves, output_dir / "learning_curves.png", study_name))
        if replicas and summary:
            figures.append(plots.replicas([r["seed"] for r in replicas["replicas"]],
                                          [r["test_f1"] for r in replicas["replicas"]], summary.test_f1,
                                          output_dir / "replicas_test_f1.png", study_name))
        markdown = output_dir / "report.md"
        text = _markdown(study_name, storage_url, record, points, best, bool(curves), replicas, summary)
        tmp = markdown.with_name(f".{markdown.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, markdown)
    except OSError as exc:
        raise OutputError(f"{output_dir}: report cannot be written ({exc.strerror or exc})") from None
    return Report(markdown, figures)


def _markdown(study_name: str, storage_url: str, record: StudyRecord, points: list[PointStatus],
              best: TrialResult | None, curves: bool, replicas: dict[str, Any] | None,
              summary: Summary | None) -> str:
    s = record.settings

    def count(*states: str) -> int:
        return sum(p.state in states for p in points)

    lines = [
        f"# Study `{study_name}`", "",
        f"- Storage: `{redact(storage_url)}`",
        f"- Data: `{record.data.data_dir}`; model: `{s.model}`"
        + (f"; tokenizer `{s.tokenizer}`" if s.tokenizer else ""),
        f"- Training: {s.epochs:g} epoch(s)" + (f" / {s.max_steps} steps" if s.max_steps else "")
        + f", max length {s.max_seq_length}, seed {s.seed}; objective: dev macro-F1",
        f"- Grid: {len(points)} points, {count('COMPLETE')} complete, {count('FAIL')} failed, "
        f"{count('PRUNED')} pruned, {count('PENDING', 'RUNNING')} not finished",
    ]
    if best is not None:
        lines.append(f"- **Best configuration: batch size {best.point.batch_size}, learning rate "
                     f"{best.point.learning_rate:g}** (trial {best.number}, dev macro-F1 {best.value:.4f}, "
                     f"dev accuracy {best.dev_accuracy:.4f})")
    lines += ["", "## Grid", "", "![dev macro-F1 per grid point](grid_heatmap.png)", "", "```",
              grid_table(points), "```", ""]
    failed = [p for p in points if p.errors and p.result is None]
    if failed:
        lines += ["Failed points:", ""] + [
            f"- batch size {p.point.batch_size}, learning rate {p.point.learning_rate:g}: {p.errors[-1]}"
            for p in failed] + [""]
    if curves:
        lines += ["## Learning curves", "", "![learning curves](learning_curves.png)", ""]
    if replicas and summary:
        lines += _replicas_markdown(replicas, summary)
    return "\n".join(lines)


def _replicas_markdown(replicas: dict[str, Any], summary: Summary) -> list[str]:
    rows = replicas["replicas"]
    ci = summary.test_f1.ci95
    lines = ["## Replicas", "", f"Folder: `{replicas['output_dir']}`", "",
             "| Seed | Dev F1 | Test F1 | Test accuracy |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['seed']} | {r['dev_f1']:.4f} | {r['test_f1']:.4f} | {r['test_accuracy']:.4f} |" for r in rows]
    lines += [f"| mean ± std | {mean_std(summary.dev_f1)} | {mean_std(summary.test_f1)} | "
              f"{mean_std(summary.test_accuracy)} |", "",
              f"Test macro-F1: mean {summary.test_f1.mean:.4f}, 95% confidence interval of the mean "
              f"[{ci[0]:.4f}, {ci[1]:.4f}] (Student's t, {len(rows) - 1} degrees of freedom).", ""]
    ensemble = replicas.get("ensemble")
    if ensemble:  # studies trained before ensembles were scored have none
        lines += [f"Ensemble of the {len(ensemble['seeds'])} replicas (their probabilities averaged): dev F1 "
                  f"{ensemble['dev_f1']:.4f}, test F1 {ensemble['test_f1']:.4f}, test accuracy "
                  f"{ensemble['test_accuracy']:.4f}.", ""]
    return [*lines, "![replicas](replicas_test_f1.png)", ""]
