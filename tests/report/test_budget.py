"""budget: the expected-best-of-k estimator against brute force, and its bootstrap band."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest

from optuna_seqclf.report.budget import budget_curve, expected_best


@pytest.mark.parametrize("scores", [[0.5], [0.8, 0.6], [0.7, 0.7, 0.2, 0.9], [0.1, 0.85, 0.84, 0.83, 0.5, 0.3]])
def test_equals_the_mean_best_over_every_subset_of_size_k(scores: list[float]) -> None:
    curve = expected_best(scores)
    for k in range(1, len(scores) + 1):
        brute = statistics.fmean(max(c) for c in itertools.combinations(scores, k))
        assert curve[k - 1] == pytest.approx(brute)
    assert curve[0] == pytest.approx(statistics.fmean(scores))  # one trial: the mean
    assert curve[-1] == pytest.approx(max(scores))  # every trial: the best
    assert all(np.diff(curve) >= -1e-12)  # more trials never expect less


def test_band_holds_the_curve_and_is_reproducible() -> None:
    scores = [0.81, 0.83, 0.79, 0.5, 0.84, 0.82, 0.33, 0.8]
    a, b = budget_curve(scores, resamples=200, seed=3), budget_curve(scores, resamples=200, seed=3)
    assert a == b
    assert all(lo <= e + 1e-9 and e <= hi + 1e-9 for lo, e, hi in zip(a.low, a.expected, a.high))
    assert list(a.budgets) == list(range(1, 9))
    assert budget_curve([]).expected == ()
