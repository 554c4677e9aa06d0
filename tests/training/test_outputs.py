"""Each task's outputs: decisions, scores against scikit-learn and scipy, the loss the model itself computes,
and the failed-run rule on scripted predictions."""

from __future__ import annotations

import numpy as np
import pytest

from optuna_seqclf.training.outputs import (
    best_constant_micro_f1,
    decide,
    decide_from_probabilities,
    failed_run,
    loss_sum,
    task_metrics,
    task_of,
    tune_thresholds,
)

TRUTH = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_decisions_per_task() -> None:
    logits = np.array([[2.0, -1.0, 0.0], [-3.0, 0.5, 0.0]], dtype=np.float32)
    ids, softmax = decide("single-label", logits)
    assert ids.tolist() == [0, 1] and np.allclose(softmax.sum(axis=1), 1)
    on, sigmoid = decide("multi-label", logits)
    assert on.tolist() == [[1, 0, 1], [0, 1, 1]]  # sigmoid(0) = 0.5 reaches the threshold
    assert np.allclose(sigmoid, 1 / (1 + np.exp(-logits)))
    scores, column = decide("regression", logits[:, :1])
    assert scores.tolist() == [2.0, -3.0] and column.shape == (2, 1)
    assert decide_from_probabilities("multi-label", (sigmoid + sigmoid) / 2).tolist() == on.tolist()


def test_multi_label_and_regression_scores_match_the_libraries() -> None:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score

    predicted = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1], [1, 0, 0]])
    m = task_metrics("multi-label", TRUTH, predicted)
    assert m["micro_f1"] == pytest.approx(f1_score(TRUTH, predicted, average="micro"))
    assert m["f1"] == pytest.approx(f1_score(TRUTH, predicted, average="macro", zero_division=0))
    assert m["samples_f1"] == pytest.approx(f1_score(TRUTH, predicted, average="samples", zero_division=0))
    assert m["subset_accuracy"] == m["accuracy"] == 0.5
    truth, guess = np.array([1.0, 2.0, 3.0, 4.5]), np.array([1.2, 1.9, 3.5, 4.0])
    r = task_metrics("regression", truth, guess)
    assert r["pearson"] == pytest.approx(pearsonr(truth, guess)[0])
    assert r["spearman"] == pytest.approx(spearmanr(truth, guess)[0])
    assert r["mse"] == pytest.approx(np.mean((truth - guess) ** 2)) and r["mae"] == pytest.approx(0.325)
    assert task_metrics("regression", truth, np.full(4, 2.0))["pearson"] == 0.0  # constant: no correlation


@pytest.mark.parametrize("task", ["multi-label", "regression"])
def test_loss_is_the_models_own(task: str) -> None:
    """The evaluation loss per example equals the mean loss transformers' head computes for the problem type."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    labels = 3 if task == "multi-label" else 1
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                        num_labels=labels, problem_type={"multi-label": "multi_label_classification",
                                                         "regression": "regression"}[task])
    model = BertForSequenceClassification(config).eval()
    assert task_of(model.config) == task
    ids = torch.randint(5, 50, (4, 6))
    target = torch.tensor(TRUTH, dtype=torch.float32) if task == "multi-label" else torch.tensor([0.5, 1, 2, 3.0])
    with torch.no_grad():
        out = model(input_ids=ids, labels=target)
    assert loss_sum(task, out.logits, target) / 4 == pytest.approx(float(out.loss), rel=1e-5)


def test_failed_runs_per_task() -> None:
    names = ["anger", "joy", "pride"]
    # the best constant set for TRUTH is {anger}: micro-F1 2*3 / (4 + 5) = 0.667
    assert best_constant_micro_f1(TRUTH, names) == (pytest.approx(2 / 3), ["anger"])
    same = np.array([[1, 0, 0]] * 4)
    assert "predicts the same labels, ['anger']" in failed_run("multi-label", TRUTH, same,
                                                               task_metrics("multi-label", TRUTH, same), names)
    weak = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]])
    reason = failed_run("multi-label", TRUTH, weak, task_metrics("multi-label", TRUTH, weak), names)
    assert reason is not None and "no better than predicting the same labels ['anger']" in reason
    good = TRUTH.copy()
    assert failed_run("multi-label", TRUTH, good, task_metrics("multi-label", TRUTH, good), names) is None

    truth, train = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.5, 2.5, 0.0, 5.0])
    flat = np.full(4, 2.5)
    assert "predicts the same score, 2.5" in failed_run("regression", truth, flat,
                                                        task_metrics("regression", truth, flat), None, train)
    off = np.array([4.0, 3.0, 2.0, 1.1])  # worse than the train mean (MSE 1.25)
    reason = failed_run("regression", truth, off, task_metrics("regression", truth, off), None, train)
    assert reason is not None and "no better than predicting the train mean 2.5" in reason
    close = truth + 0.1
    assert failed_run("regression", truth, close, task_metrics("regression", truth, close), None, train) is None


def test_thresholds_tuned_per_label_on_dev() -> None:
    # label 0: positives at 0.3-0.4, negatives below 0.2: a threshold of 0.5 misses every one, 0.25 catches all
    # label 1: 0.5 separates it already (kept); label 2: no positive example (kept at 0.5)
    probabilities = np.array([[0.30, 0.9, 0.1], [0.40, 0.2, 0.7], [0.10, 0.6, 0.2], [0.15, 0.1, 0.3]])
    truth = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    chosen = tune_thresholds(truth, probabilities)
    assert chosen[0] in (0.2, 0.25, 0.3) and chosen[1] == 0.5 and chosen[2] == 0.5
    at_half = decide_from_probabilities("multi-label", probabilities)
    tuned = decide_from_probabilities("multi-label", probabilities, chosen)
    assert tuned[:, 0].tolist() == [1, 1, 0, 0] and at_half[:, 0].tolist() == [0, 0, 0, 0]
    assert task_metrics("multi-label", truth, tuned)["f1"] > task_metrics("multi-label", truth, at_half)["f1"]
    # ties go to the candidate nearest 0.5: any threshold in (0.4, 0.6] separates label 1 of these
    assert tune_thresholds(np.array([[1], [0]]), np.array([[0.65], [0.35]])) == [0.5]
