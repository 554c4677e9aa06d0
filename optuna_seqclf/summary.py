"""The replicas' scores summarised: mean, standard deviation and 95% confidence interval of each metric.

Computed here and nowhere else; ``train`` stores it, and the table, the report and its plot read it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

# Each task's replica columns: (key, header) of the dev score, the test score and one more test score. The
# first two are the task's headline metric (macro-F1 of single-label as the reference reports it; micro-F1,
# the multi-label objective; Pearson); a row per replica holds them as ``dev_<metric>`` / ``test_<metric>``.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "single-label": (("dev_f1", "Dev F1"), ("test_f1", "Test F1"), ("test_accuracy", "Test Accuracy")),
    "multi-label": (("dev_micro_f1", "Dev micro-F1"), ("test_micro_f1", "Test micro-F1"),
                    ("test_f1", "Test macro-F1")),
    "regression": (("dev_pearson", "Dev Pearson"), ("test_pearson", "Test Pearson"),
                   ("test_spearman", "Test Spearman")),
}
HEADLINE = {"single-label": "F1", "multi-label": "micro-F1", "regression": "Pearson"}  # how lines name it
METRICS = tuple(key for key, _ in COLUMNS["single-label"])  # single-label's, the layout before tasks


@dataclass(frozen=True)
class MetricSummary:
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for a single value
    ci95: tuple[float, float]  # two-sided 95% confidence interval of the mean, Student's t (n - 1 dof)
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> MetricSummary:
        mean = statistics.fmean(values)
        if len(values) < 2:
            return cls(mean, 0.0, (mean, mean), len(values))
        from scipy import stats

        std = statistics.stdev(values)
        half = float(stats.t.ppf(0.975, len(values) - 1)) * std / math.sqrt(len(values))
        return cls(mean, std, (mean - half, mean + half), len(values))


@dataclass(frozen=True)
class Summary:
    """One ``MetricSummary`` per replica column of the task (``COLUMNS``)."""

    metrics: dict[str, MetricSummary]
    task: str = "single-label"

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]], task: str = "single-label") -> Summary:
        """From one row per replica, each holding the task's columns (``dev_f1``, ``test_f1`` and
        ``test_accuracy`` for single-label)."""
        return cls({key: MetricSummary.of([float(row[key]) for row in rows]) for key in cls.columns_of(task)}, task)

    @staticmethod
    def columns_of(task: str) -> tuple[str, ...]:
        return tuple(key for key, _ in COLUMNS[task])

    @property
    def columns(self) -> tuple[str, ...]:
        return self.columns_of(self.task)

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(header for _, header in COLUMNS[self.task])

    def __getitem__(self, column: str) -> MetricSummary:
        return self.metrics[column]

    def __getattr__(self, column: str) -> MetricSummary:
        """A column by name, as before tasks (``summary.test_f1``; ``summary.test_pearson`` for regression)."""
        if column == "metrics":  # not set yet (unpickling): no recursion
            raise AttributeError(column)
        return by_name(self.metrics, column, "column")

    @property
    def headline(self) -> str:
        return HEADLINE[self.task]

    @property
    def dev(self) -> MetricSummary:
        """The headline metric on dev (the first column)."""
        return self.metrics[self.columns[0]]

    @property
    def test(self) -> MetricSummary:
        """The headline metric on test (the second column): what the report's interval and plot show."""
        return self.metrics[self.columns[1]]

    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{"mean": {column: x}, "std": {...}, "ci95": {...}}``, the layout of replicas_summary.json."""
        parts = {name: asdict(summary) for name, summary in self.metrics.items()}
        return {key: {name: parts[name][key] for name in self.metrics} for key in ("mean", "std", "ci95")}


V = TypeVar("V")


def by_name(values: Mapping[str, V], name: str, what: str) -> V:
    """``values[name]`` for a ``__getattr__``: an AttributeError naming what there is when it is missing."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return values[name]
    except KeyError:
        raise AttributeError(f"no {what} {name!r} (there are {', '.join(values)})") from None


def headline_scores(task: str, scores: Mapping[str, float]) -> str:
    """``dev F1 0.8123, test F1 0.8011``: the task's headline metric on dev and test, for progress lines."""
    (dev, _), (test, _) = COLUMNS[task][:2]
    return f"dev {HEADLINE[task]} {scores[dev]:.4f}, test {HEADLINE[task]} {scores[test]:.4f}"
