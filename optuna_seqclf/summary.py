"""The replicas' scores summarised: mean, standard deviation and 95% confidence interval of each metric.

Computed here and nowhere else; ``train`` stores it, and the table, the report and its plot read it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

METRICS = ("dev_f1", "test_f1", "test_accuracy")


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
    """One ``MetricSummary`` per replica metric."""

    dev_f1: MetricSummary
    test_f1: MetricSummary
    test_accuracy: MetricSummary

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]]) -> Summary:
        """From one row per replica, each holding ``dev_f1``, ``test_f1`` and ``test_accuracy``."""
        return cls(*(MetricSummary.of([float(row[name]) for row in rows]) for name in METRICS))

    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{"mean": {metric: x}, "std": {...}, "ci95": {...}}``, the layout of replicas_summary.json."""
        parts = {name: asdict(getattr(self, name)) for name in METRICS}
        return {key: {name: parts[name][key] for name in METRICS} for key in ("mean", "std", "ci95")}
