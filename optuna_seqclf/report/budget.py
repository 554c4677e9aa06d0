"""Expected best dev F1 against the number of grid trials: would a smaller grid have done?

The "Show Your Work" curve (Dodge et al. 2019): for a budget of k trials drawn from the N trained, the
expected best score. We use the unbiased estimator for draws without replacement (Tang et al. 2020
showed the original, with replacement, is biased): with the scores sorted ascending, v_(1) <= ... <= v_(N),

    E[max of k] = sum_i v_(i) * C(i - 1, k - 1) / C(N, k)

(v_(i) is the best of k distinct trials exactly when the other k - 1 come from the i - 1 below it). The
band is a bootstrap over the N scores: the 2.5th and 97.5th percentiles of the same curve computed on
resampled score sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BudgetCurve:
    """``expected[k - 1]`` is the expected best of k trials; ``low``/``high`` its bootstrap band."""

    expected: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def budgets(self) -> range:
        return range(1, len(self.expected) + 1)


def _log_choose(n: np.ndarray, k: int) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def expected_best(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """The expected best score of k trials drawn without replacement from ``scores``, for k = 1..N."""
    v = np.sort(np.asarray(scores, dtype=float))
    n = len(v)
    out = np.empty(n)
    i = np.arange(1, n + 1)
    for k in range(1, n + 1):
        weights = np.zeros(n)
        ok = i >= k  # C(i - 1, k - 1) is 0 below that
        weights[ok] = np.exp(_log_choose(i[ok] - 1, k - 1) - _log_choose(np.array(n), k))
        out[k - 1] = float(weights @ v)
    return out


def budget_curve(scores: Sequence[float], resamples: int = 1000, seed: int = 0) -> BudgetCurve:
    """The curve and its 95% bootstrap band (deterministic for a given ``seed``)."""
    values = np.asarray(scores, dtype=float)
    if len(values) == 0:
        return BudgetCurve((), (), ())
    curve = expected_best(values)
    rng = np.random.default_rng(seed)
    boot = np.array([expected_best(rng.choice(values, size=len(values), replace=True)) for _ in range(resamples)])
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    return BudgetCurve(tuple(map(float, curve)), tuple(map(float, low)), tuple(map(float, high)))
