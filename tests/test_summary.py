"""Replica statistics: mean, sample standard deviation and the 95% confidence interval, computed once."""

from __future__ import annotations

import pytest

from optuna_seqclf.summary import MetricSummary, Summary


def test_confidence_interval_matches_students_t() -> None:
    m = MetricSummary.of([0.80, 0.82, 0.81, 0.79, 0.83])
    # mean 0.81, sample std 0.015811, t(0.975, 4) = 2.776445: half width 0.019630
    assert m.mean == pytest.approx(0.81) and m.std == pytest.approx(0.015811, abs=1e-6) and m.n == 5
    low, high = m.ci95
    assert low == pytest.approx(0.81 - 0.019630, abs=1e-5) and high == pytest.approx(0.81 + 0.019630, abs=1e-5)


def test_one_replica_has_no_spread() -> None:
    assert MetricSummary.of([0.7]) == MetricSummary(0.7, 0.0, (0.7, 0.7), 1)


def test_summary_json_keeps_the_layout_of_replicas_summary() -> None:
    rows = [{"dev_f1": 0.5, "test_f1": 0.6, "test_accuracy": 0.7},
            {"dev_f1": 0.7, "test_f1": 0.8, "test_accuracy": 0.9}]
    out = Summary.of(rows).to_json()
    assert sorted(out) == ["ci95", "mean", "std"]
    assert out["mean"] == pytest.approx({"dev_f1": 0.6, "test_f1": 0.7, "test_accuracy": 0.8})
    assert out["std"]["test_f1"] == pytest.approx(0.141421, abs=1e-6)
    assert out["ci95"]["dev_f1"][0] < 0.6 < out["ci95"]["dev_f1"][1]


def test_each_task_summarises_its_own_columns() -> None:
    rows = [{"dev_pearson": 0.8, "test_pearson": 0.7, "test_spearman": 0.6, "dev_f1": 0.1},
            {"dev_pearson": 0.6, "test_pearson": 0.5, "test_spearman": 0.4, "dev_f1": 0.1}]
    summary = Summary.of(rows, "regression")
    assert summary.columns == ("dev_pearson", "test_pearson", "test_spearman")
    assert summary.headers == ("Dev Pearson", "Test Pearson", "Test Spearman")
    assert summary.test.mean == pytest.approx(0.6) and summary.dev.mean == pytest.approx(0.7)
    assert sorted(summary.to_json()["mean"]) == ["dev_pearson", "test_pearson", "test_spearman"]
    multi = Summary.of([{"dev_micro_f1": 0.5, "test_micro_f1": 0.4, "test_f1": 0.3}], "multi-label")
    assert multi.headline == "micro-F1" and multi["test_f1"].mean == 0.3
    with pytest.raises(KeyError):  # a row without the task's columns
        Summary.of([{"dev_f1": 0.5}], "regression")
