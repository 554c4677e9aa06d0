"""Figures for ``report``: PNG files written with matplotlib. The only module importing matplotlib."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_seqclf.settings import HParams

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from optuna_seqclf.report.budget import BudgetCurve
    from optuna_seqclf.study.queue import PointStatus
    from optuna_seqclf.study.selection import ConfirmedPoint
    from optuna_seqclf.summary import MetricSummary

_STATE_LABELS = {"FAIL": "failed", "PRUNED": "pruned", "RUNNING": "running", "PENDING": "not run",
                 "INFEASIBLE": "out of\nmemory"}


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    """A figure and its axes (one ``Axes``, or an array of ``ncols``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height), dpi=120, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)
    return path


def _log_edges(values: Sequence[float]) -> list[float]:
    """Cell edges on a log axis: geometric midpoints between sorted values, one step beyond each end."""
    logs = [math.log10(v) for v in values]
    if len(logs) == 1:
        return [10 ** (logs[0] - 0.25), 10 ** (logs[0] + 0.25)]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(logs)]
    return [10 ** x for x in [2 * logs[0] - mids[0], *mids, 2 * logs[-1] - mids[-1]]]


def heatmap(points: Sequence[PointStatus], best: HParams | None, path: Path, title: str,
            metric: str = "dev macro-F1") -> Path:
    """The dev metric over batch size x learning rate; unfinished cells hatched and labelled with their state."""
    import numpy as np
    from matplotlib.patches import Rectangle

    lrs = sorted({p.point.learning_rate for p in points})
    sizes = sorted({p.point.batch_size for p in points})
    grid = np.full((len(sizes), len(lrs)), np.nan)
    for p in points:
        if p.result is not None:
            grid[sizes.index(p.point.batch_size), lrs.index(p.point.learning_rate)] = p.result.value
    x_edges, y_edges = _log_edges(lrs), np.arange(len(sizes) + 1) - 0.5
    fig, ax = _figure(max(6.0, 0.75 * len(lrs) + 2.5), max(3.0, 0.8 * len(sizes) + 1.8))
    ax.set_facecolor("#e6e6e6")
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0,
                         edgecolors="white", linewidth=1.5)
    ax.set_xscale("log")
    for p in points:
        row, col = sizes.index(p.point.batch_size), lrs.index(p.point.learning_rate)
        x0, x1 = x_edges[col], x_edges[col + 1]
        center = math.sqrt(x0 * x1)
        value = grid[row, col]
        if math.isnan(value):
            ax.add_patch(Rectangle((x0, row - 0.5), x1 - x0, 1, fill=False, hatch="///", edgecolor="#999999",
                                   linewidth=0))
            ax.text(center, row, _STATE_LABELS.get(p.state, p.state.lower()), ha="center", va="center",
                    fontsize=7, color="#b00020" if p.state in ("FAIL", "INFEASIBLE") else "#444444")
        else:
            failed = p.result is not None and p.result.failed_run is not None
            ax.text(center, row, f"{value:.3f}" + ("\nfailed run" if failed else ""), ha="center", va="center",
                    fontsize=7, color="#ff6b6b" if failed else "white" if value < 0.6 else "black")
        if best is not None and p.point == best:
            ax.add_patch(Rectangle((x0, row - 0.5), x1 - x0, 1, fill=False, edgecolor="#d62728", linewidth=3))
    ax.set_yticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs], rotation=45, ha="right")
    ax.minorticks_off()
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("batch size (examples)")
    best_text = f"; best (red box): batch size {best.batch_size}, learning rate {best.learning_rate:g}" if best else ""
    ax.set_title(f"{title}\n{metric} per grid point{best_text}", fontsize=10)
    fig.colorbar(mesh, ax=ax, label=metric, fraction=0.04)
    return _save(fig, path)


def learning_curves(curves: dict[HParams, list[dict[str, float]]], path: Path, title: str, key: str = "f1",
                    metric: str = "dev macro-F1", loss: str = "dev cross-entropy loss") -> Path:
    """The study's metric on dev (``key`` of each epoch's record: macro-F1's ``f1`` by default) and the dev loss
    after each epoch, one line per trained grid point."""
    import matplotlib

    fig, (ax_f1, ax_loss) = _figure(11.0, 4.2, ncols=2)
    lrs = sorted({hp.learning_rate for hp in curves})
    cmap = matplotlib.colormaps["plasma"]
    styles = ["-", "--", ":", "-."]
    sizes = sorted({hp.batch_size for hp in curves})
    for hp, history in sorted(curves.items()):
        epochs = [h["epoch"] for h in history]
        color = cmap(lrs.index(hp.learning_rate) / max(1, len(lrs) - 1) * 0.9)
        style = styles[sizes.index(hp.batch_size) % len(styles)]
        label = f"bs {hp.batch_size}, lr {hp.learning_rate:g}"
        ax_f1.plot(epochs, [h.get(key, float("nan")) for h in history], style, marker="o", markersize=3,
                   color=color, label=label)
        ax_loss.plot(epochs, [h["loss"] for h in history], style, marker="o", markersize=3, color=color)
    ax_f1.set_ylabel(metric)
    values = [h.get(key, 0.0) for history in curves.values() for h in history]
    ax_f1.set_ylim(-1 if min(values, default=0.0) < 0 else 0, 1)  # correlations go below 0
    ax_loss.set_ylabel(loss)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_f1, ax_loss):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(fontsize=6, ncol=2 if len(curves) > 18 else 1, loc="outside right upper",
               title="line style = batch size", title_fontsize=6)
    fig.suptitle(f"{title}: learning curves (colour = learning rate)", fontsize=10)
    return _save(fig, path)


def replicas(seeds: Sequence[int], test_f1: Sequence[float], summary: MetricSummary, path: Path,
             title: str, metric: str = "test macro-F1") -> Path:
    """Each seed's test score (``metric``: macro-F1, micro-F1, Pearson) as a point, the mean with ± one standard
    deviation and the 95% CI."""
    mean, std, ci95 = summary.mean, summary.std, summary.ci95
    fig, ax = _figure(6.0, 3.6)
    ax.scatter(range(len(seeds)), test_f1, color="#1f77b4", zorder=3, label="one replica (seed)")
    for i, f1 in enumerate(test_f1):
        ax.annotate(f"{f1:.3f}", (i, f1), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.axhline(mean, color="#d62728", label=f"mean {mean:.4f}")
    ax.axhspan(mean - std, mean + std, color="#d62728", alpha=0.12, label=f"± 1 std ({std:.4f})")
    ax.axhline(ci95[0], color="#555555", linestyle="--", linewidth=1,
               label=f"95% CI of the mean [{ci95[0]:.4f}, {ci95[1]:.4f}]")
    ax.axhline(ci95[1], color="#555555", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(seeds)), [str(s) for s in seeds])
    ax.set_xlabel("seed")
    metric = metric[0].lower() + metric[1:]  # "Test Pearson" -> "test Pearson"
    ax.set_ylabel(metric)
    low = min(min(test_f1), ci95[0], mean - std)
    high = max(max(test_f1), ci95[1], mean + std)
    pad = max(0.01, (high - low) * 0.25)
    ax.set_ylim(max(-1.0 if low < 0 else 0.0, low - pad), min(1.0, high + pad))  # correlations go below 0
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{title}\nreplicas with the best configuration: {metric}", fontsize=10)
    return _save(fig, path)


def confirmation(confirmed: Sequence[ConfirmedPoint], path: Path, title: str, metric: str = "dev macro-F1") -> Path:
    """The confirmed points' dev metric per seed (a strip), their mean and 95% interval; chosen first."""
    fig, ax = _figure(max(5.0, 1.6 * len(confirmed) + 2.0), 3.6)
    for x, c in enumerate(confirmed):
        color = "#d62728" if x == 0 else "#1f77b4"
        ax.scatter([x] * len(c.values), c.values, color=color, zorder=3, s=18)
        for seed, value in zip(c.seeds, c.values):
            ax.annotate(str(seed), (x, value), textcoords="offset points", xytext=(6, -3), fontsize=6)
        m = c.summary
        ax.errorbar([x - 0.15], [m.mean], yerr=[[m.mean - m.ci95[0]], [m.ci95[1] - m.mean]], fmt="D", color=color,
                    markersize=5, capsize=4)
    ax.set_xticks(range(len(confirmed)),
                  [f"bs {c.point.batch_size}\nlr {c.point.learning_rate:g}" for c in confirmed], fontsize=8)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{title}\nconfirmed points: each seed (dot, labelled), mean and 95% interval (diamond); "
                 "chosen in red", fontsize=9)
    return _save(fig, path)


def expected_best(curve: BudgetCurve, path: Path, title: str, metric: str = "dev macro-F1") -> Path:
    """Expected best dev metric against the number of grid trials, with its bootstrap band."""
    fig, ax = _figure(6.0, 3.6)
    budgets = list(curve.budgets)
    ax.fill_between(budgets, curve.low, curve.high, color="#1f77b4", alpha=0.2, label="95% bootstrap band")
    ax.plot(budgets, curve.expected, marker="o", markersize=3, color="#1f77b4", label="expected best")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("grid trials (drawn at random from those trained)")
    ax.set_ylabel(f"expected best {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{title}\nexpected best {metric} vs budget (Dodge et al. 2019; unbiased estimator)",
                 fontsize=9)
    return _save(fig, path)
