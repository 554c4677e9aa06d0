"""failed_runs: the majority baseline and when a run counts as failed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from optuna_seqclf.training.metrics import failed_run_reason, majority_baseline_f1


@pytest.mark.parametrize("labels", [[0, 0, 0, 1], [0, 1, 2, 2, 2, 3], [1, 1, 0], [2, 2, 2, 0, 0, 1, 1, 1, 1]])
def test_baseline_is_scikit_learns_macro_f1_of_the_majority_class(labels: list[int]) -> None:
    y = np.array(labels)
    constant = np.full_like(y, np.bincount(y).argmax())
    assert majority_baseline_f1(y) == pytest.approx(f1_score(y, constant, average="macro", zero_division=0))


def test_one_class_for_everything_fails_even_when_it_is_not_the_majority() -> None:
    labels = np.array([0, 0, 0, 1])
    reason = failed_run_reason(labels, np.ones(4, dtype=int), 0.2, ("negative", "positive"))
    assert reason == "predicts one class, 'positive', for every dev example"  # the user's name for it
    assert "'id 1'" in str(failed_run_reason(labels, np.ones(4, dtype=int), 0.2))  # no names given


def test_no_better_than_the_majority_class_fails() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    predictions = np.array([0, 0, 1, 1, 0, 0])  # two classes, yet worse than always 0
    f1 = f1_score(labels, predictions, average="macro")
    reason = failed_run_reason(labels, predictions, f1)
    assert reason is not None and "majority class" in reason


def test_a_model_that_learned_something_does_not_fail() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    predictions = np.array([0, 0, 0, 1, 1, 1])
    assert failed_run_reason(labels, predictions, f1_score(labels, predictions, average="macro")) is None
    # a one-class dev set predicted perfectly is not a failure either
    assert failed_run_reason(np.zeros(3, int), np.zeros(3, int), 1.0) is None
