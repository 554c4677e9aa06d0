"""What studies hold: the ``studies`` listing and the ``report`` folder (report.md and PNG plots)."""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from . import plots
from .config import HParams, check_name
from .errors import OutputError, StudyError
from .objective import DUPLICATE_ATTR, HISTORY_ATTR
from .report import best_trial, grid_table, rst_table
from .study import REPLICAS_ATTR, PointStatus, StudyRecord, load_study, open_storage, point_status, redact


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
        space = StudyRecord.from_study(study).space()
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
    return StudyOverview(
        study.study_name, storage_url, len(points), sum(p.complete is not None for p in points),
        sum(p.state == "FAIL" for p in points), sum(p.state == "RUNNING" for p in points),
        sum(p.state == "PRUNED" for p in points),
        HParams.from_params(best_t.params) if best_t else None, float(best_t.value) if best_t else None,
    )


def list_studies(storage_urls: list[str]) -> list[StudyOverview]:
    """Every study in each storage, in name order."""
    out = []
    for url in storage_urls:
        storage = open_storage(url, must_exist=True)
        for summary in sorted(optuna.get_all_study_summaries(storage=storage), key=lambda s: s.study_name):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            out.append(_overview(study, redact(url)))
    return out


def local_storages(studies_dir: Path = Path("studies")) -> list[str]:
    """The SQLite storages in ``studies_dir`` (the default home of studies)."""
    if not studies_dir.is_dir():
        return []
    return [f"sqlite:///{p}" for p in sorted(studies_dir.glob("*.db")) if p.is_file()]


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


def _learning_curves(study: optuna.Study, points: list[PointStatus]) -> dict[HParams, list[dict[str, float]]]:
    curves = {}
    for p in points:
        trial = p.complete
        if trial is not None and DUPLICATE_ATTR not in trial.user_attrs and trial.user_attrs.get(HISTORY_ATTR):
            curves[p.point] = list(trial.user_attrs[HISTORY_ATTR])
    return curves


def confidence_interval95(values: list[float]) -> tuple[float, float]:
    """Two-sided 95% confidence interval of the mean (Student's t, n-1 degrees of freedom)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def write_report(study_name: str, storage_url: str, output_dir: Path) -> Report:
    """``report.md`` and its plots for one study, in ``output_dir``."""
    check_name(study_name, "study name")
    study = load_study(study_name, open_storage(storage_url, must_exist=True), storage_url)
    record = StudyRecord.from_study(study)
    points = point_status(study, record.space())
    best_t = best_trial(study)
    best = HParams.from_params(best_t.params) if best_t else None
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        figures = [plots.heatmap(points, best, output_dir / "grid_heatmap.png", study_name)]
        curves = _learning_curves(study, points)
        if curves:
            figures.append(plots.learning_curves(curves, output_dir / "learning_curves.png", study_name))
        replicas = study.user_attrs.get(REPLICAS_ATTR)
        ci = None
        if replicas:
            f1s = [r["test_f1"] for r in replicas["replicas"]]
            ci = confidence_interval95(f1s)
            figures.append(plots.replicas([r["seed"] for r in replicas["replicas"]], f1s, ci,
                                          output_dir / "replicas_test_f1.png", study_name))
        markdown = output_dir / "report.md"
        text = _markdown(study_name, storage_url, record, points, best_t, curves, replicas, ci, figures)
        tmp = markdown.with_name(f".{markdown.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, markdown)
    except OSError as exc:
        raise OutputError(f"{output_dir}: report cannot be written ({exc.strerror or exc})") from None
    return Report(markdown, figures)


def _markdown(study_name: str, storage_url: str, record: StudyRecord, points: list[PointStatus],
              best: optuna.trial.FrozenTrial | None, curves: dict[HParams, Any], replicas: dict[str, Any] | None,
              ci: tuple[float, float] | None, figures: list[Path]) -> str:
    done = sum(p.complete is not None for p in points)
    lines = [
        f"# Study `{study_name}`", "",
        f"- Storage: `{redact(storage_url)}`",
        f"- Data: `{record.data_dir}`; model: `{record.model}`" + (f"; tokenizer `{record.tokenizer}`"
                                                                    if record.tokenizer else ""),
        f"- Training: {record.epochs:g} epoch(s)" + (f" / {record.max_steps} steps" if record.max_steps else "")
        + f", max length {record.max_seq_length}, seed {record.seed}; objective: dev macro-F1",
        f"- Grid: {len(points)} points, {done} complete, "
        f"{sum(p.state == 'FAIL' for p in points)} failed, {sum(p.state == 'PRUNED' for p in points)} pruned, "
        f"{sum(p.state in ('PENDING', 'RUNNING') for p in points)} not finished",
    ]
    if best is not None:
        hp = HParams.from_params(best.params)
        lines.append(f"- **Best configuration: batch size {hp.batch_size}, learning rate {hp.learning_rate:g}** "
                     f"(trial {best.number}, dev macro-F1 {best.value:.4f}, dev accuracy "
                     f"{best.user_attrs.get('dev_accuracy', float('nan')):.4f})")
    lines += ["", "## Grid", "", "![dev macro-F1 per grid point](grid_heatmap.png)", "", "```",
              grid_table(points), "```", ""]
    failed = [p for p in points if p.errors and p.complete is None]
    if failed:
        lines += ["Failed points:", ""] + [
            f"- batch size {p.point.batch_size}, learning rate {p.point.learning_rate:g}: {p.errors[-1]}"
            for p in failed] + [""]
    if curves:
        lines += ["## Learning curves", "", "![learning curves](learning_curves.png)", ""]
    if replicas:
        rows = replicas["replicas"]
        mean, std = replicas["mean"], replicas["std"]
        assert ci is not None
        lines += ["## Replicas", "", f"Folder: `{replicas['output_dir']}`", "",
                  "| Seed | Dev F1 | Test F1 | Test accuracy |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['seed']} | {r['dev_f1']:.4f} | {r['test_f1']:.4f} | {r['test_accuracy']:.4f} |" for r in rows]
        lines += [f"| mean ± std | {mean['dev_f1']:.4f} ± {std['dev_f1']:.4f} | {mean['test_f1']:.4f} ± "
                  f"{std['test_f1']:.4f} | {mean['test_accuracy']:.4f} ± {std['test_accuracy']:.4f} |", "",
                  f"Test macro-F1: mean {mean['test_f1']:.4f}, 95% confidence interval of the mean "
                  f"[{ci[0]:.4f}, {ci[1]:.4f}] (Student's t, {len(rows) - 1} degrees of freedom).", "",
                  "![replicas](replicas_test_f1.png)", ""]
    return "\n".join(lines)
