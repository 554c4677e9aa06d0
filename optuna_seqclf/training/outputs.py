"""What a model's outputs mean under each task (``settings.TASKS``): the evaluation loss, the decisions and
probabilities, the scores, and when a run counts as failed.

- single-label: softmax over the classes, the most probable one; macro-F1 (``f1``), micro-F1, accuracy, MCC.
- multi-label: a sigmoid per label, a label predicted when its probability reaches its threshold (0.5, or
  per label as ``tune_thresholds`` chose them on dev, ``--thresholds tuned``: kept in the model's config);
  micro-F1, macro-F1 over labels (``f1``), samples-F1, subset accuracy (``subset_accuracy``, and ``accuracy``
  as scikit-learn's ``accuracy_score`` computes it on label sets: the same number).
- regression: the one output is the score; Pearson, Spearman, MSE, MAE.

The failed-run rule has one meaning for every task: a model no better than a trivial predictor. Single-label:
the majority class (``training.metrics``); multi-label: the best constant label set (the same labels for every
text, the set that scores best on dev); regression: the train mean for every text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from optuna_seqclf.training.metrics import TOLERANCE, classification_metrics, failed_run_reason, per_class_f1

if TYPE_CHECKING:
    import torch

# the trivial predictor each task's failed runs are no better than, as messages name it
TRIVIAL = {"single-label": "always predicting the majority class", "multi-label": "predicting the same labels "
           "for every text", "regression": "predicting the train mean for every text"}
THRESHOLD = 0.5  # multi-label: a label is predicted when its probability reaches this
_TASK_OF_PROBLEM = {"multi_label_classification": "multi-label", "regression": "regression"}


def task_of(config: Any) -> str:
    """The task a model was trained for, from its ``config.problem_type`` (none: single-label, as HF reads
    a classifier with more than one label and integer labels)."""
    return _TASK_OF_PROBLEM.get(getattr(config, "problem_type", None) or "", "single-label")


def loss_sum(task: str, logits: torch.Tensor, target: torch.Tensor) -> float:
    """The batch's summed loss, as the model's own loss for ``task`` (cross-entropy, BCE per label, MSE)."""
    import torch.nn.functional as F

    if task == "multi-label":
        return float(F.binary_cross_entropy_with_logits(logits, target.float(), reduction="sum")) / logits.shape[1]
    if task == "regression":
        return float(F.mse_loss(logits.view(-1), target.float().view(-1), reduction="sum"))
    return float(F.cross_entropy(logits, target, reduction="sum"))


def decide(task: str, logits: np.ndarray, thresholds: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, probabilities) from logits, one row per example: class ids and the softmax; 0/1 per label
    and the sigmoids; the scores (and, as the "probabilities", the same scores as one column)."""
    if task == "regression":
        return logits[:, 0].copy(), logits[:, :1].copy()
    if task == "multi-label":
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        return decide_from_probabilities(task, probabilities, thresholds), probabilities
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    return probabilities.argmax(axis=-1), probabilities


def decide_from_probabilities(task: str, probabilities: np.ndarray,
                              thresholds: Sequence[float] | None = None) -> np.ndarray:
    """The predictions of (averaged) probabilities: the most probable class, the labels at their thresholds
    (``THRESHOLD`` when none are given), the score itself (the ensemble: mean probabilities, mean scores)."""
    if task == "regression":
        return probabilities[:, 0]
    if task == "multi-label":
        cut = THRESHOLD if thresholds is None else np.asarray(thresholds, dtype=probabilities.dtype)
        return (probabilities >= cut).astype(np.int8)
    return probabilities.argmax(axis=1)


# --thresholds tuned: the candidates per label; 0.5 first, so that a label whose F1 no candidate improves keeps it
THRESHOLD_CANDIDATES = (0.5, *(round(0.05 * i, 2) for i in range(1, 20) if i != 10))


def tune_thresholds(truth: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per label, the candidate threshold (``THRESHOLD_CANDIDATES``) with the best F1 of that label on
    ``truth`` (the dev split); ties go to the candidate nearest 0.5, so a label with no positive example, or
    one no threshold helps, keeps 0.5. Each label's F1 is its own, so this also maximises macro-F1; micro-F1
    usually rises with it (it is not separable by label, and is not searched jointly)."""
    truth = np.asarray(truth).astype(bool)
    chosen = []
    for label in range(truth.shape[1]):
        positives, column = truth[:, label], probabilities[:, label]
        best, best_cut = -1.0, THRESHOLD
        for cut in sorted(THRESHOLD_CANDIDATES, key=lambda c: (abs(c - THRESHOLD), c)):
            predicted = column >= cut
            hits = float((predicted & positives).sum())
            size = float(predicted.sum() + positives.sum())
            f1 = 2 * hits / size if size else 0.0
            if f1 > best + 1e-12:
                best, best_cut = f1, cut
        chosen.append(float(best_cut))
    return chosen


def task_metrics(task: str, truth: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Every score of ``task`` (keys as the module says) of ``predictions`` against ``truth``."""
    if task == "regression":
        return regression_metrics(truth, predictions)
    if task == "multi-label":
        return multi_label_metrics(truth, predictions)
    return classification_metrics(truth, predictions)


def multi_label_metrics(truth: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    truth, predictions = np.asarray(truth).astype(np.int8), np.asarray(predictions).astype(np.int8)
    subset = float(accuracy_score(truth, predictions))
    return {"micro_f1": float(f1_score(truth, predictions, average="micro", zero_division=0)),
            "f1": float(f1_score(truth, predictions, average="macro", zero_division=0)),
            "samples_f1": _samples_f1(truth, predictions),
            "subset_accuracy": subset, "accuracy": subset}


def _samples_f1(truth: np.ndarray, predictions: np.ndarray) -> float:
    """Each example's F1 between its true and predicted label sets, averaged: scikit-learn's ``samples`` average
    (0 for an example with neither), which it refuses for a single label column."""
    hits = (truth & predictions).sum(axis=1).astype(np.float64)
    sizes = (truth.sum(axis=1) + predictions.sum(axis=1)).astype(np.float64)
    per_example = np.divide(2 * hits, sizes, out=np.zeros_like(hits), where=sizes > 0)
    return float(per_example.mean()) if len(per_example) else 0.0


def regression_metrics(truth: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman (0 when either side is constant: no correlation can be read), MSE, MAE."""
    from scipy.stats import pearsonr, spearmanr

    truth, predictions = np.asarray(truth, np.float64), np.asarray(predictions, np.float64)
    constant = np.ptp(truth) == 0 or np.ptp(predictions) == 0 if len(truth) else True
    return {"pearson": 0.0 if constant else float(pearsonr(truth, predictions)[0]),
            "spearman": 0.0 if constant else float(spearmanr(truth, predictions)[0]),
            "mse": float(np.mean((truth - predictions) ** 2)) if len(truth) else 0.0,
            "mae": float(np.mean(np.abs(truth - predictions))) if len(truth) else 0.0}


def per_label_f1(task: str, truth: np.ndarray, predictions: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Each class's (single-label) or label's (multi-label) F1 by name; nothing for regression."""
    if task == "regression":
        return {}
    if task == "multi-label":
        from sklearn.metrics import f1_score

        scores = f1_score(np.asarray(truth).astype(np.int8), np.asarray(predictions).astype(np.int8), average=None,
                          zero_division=0)
        return {name: float(score) for name, score in zip(names, scores)}
    return per_class_f1(truth, predictions, names)


def failed_run(task: str, truth: np.ndarray, predictions: np.ndarray, metrics: dict[str, float],
               names: Sequence[str] | None = None, train_truth: np.ndarray | None = None) -> str | None:
    """Why a run on dev (``truth``, its ``predictions`` and ``metrics``) counts as failed, in one line; None when
    it did not. ``train_truth``: regression's baseline is the train mean (the dev mean without it)."""
    if task == "regression":
        truth = np.asarray(truth, np.float64)
        mean = float(np.mean(train_truth if train_truth is not None else truth))
        baseline = float(np.mean((truth - mean) ** 2))
        if np.ptp(np.asarray(predictions)) == 0:
            return f"predicts the same score, {float(predictions[0]):.4g}, for every dev example"
        if metrics["mse"] >= baseline - TOLERANCE:
            return (f"dev MSE {metrics['mse']:.4f} is no better than predicting the train mean {mean:.4g} for every "
                    f"example ({baseline:.4f})")
        return None
    if task == "multi-label":
        predictions = np.asarray(predictions)
        if len(predictions) > 1 and (predictions == predictions[0]).all():
            chosen = [n for n, p in zip(names or [], predictions[0]) if p] if names is not None else []
            return f"predicts the same labels, {chosen!r}, for every dev example"
        best, chosen_set = best_constant_micro_f1(np.asarray(truth), names)
        if metrics["micro_f1"] <= best + TOLERANCE:
            return (f"dev micro-F1 {metrics['micro_f1']:.4f} is no better than predicting the same labels "
                    f"{chosen_set!r} for every example ({best:.4f})")
        return None
    return failed_run_reason(truth, predictions, metrics["f1"], names)


def best_constant_micro_f1(truth: np.ndarray, names: Sequence[str] | None = None) -> tuple[float, list[str]]:
    """The best micro-F1 that one label set predicted for every example reaches on ``truth`` (0/1 rows), and
    that set. Adding a label adds its count to the hits and all examples to the predictions, so the best set
    is the k most frequent labels for some k: every k is tried."""
    counts = np.asarray(truth).sum(axis=0).astype(np.float64)
    examples, positives = len(truth), float(counts.sum())
    order = np.argsort(-counts, kind="stable")
    best, best_k, hits = 0.0, 0, 0.0
    for k, label in enumerate(order, start=1):
        hits += counts[label]
        f1 = 2 * hits / (k * examples + positives) if positives else 0.0
        if f1 > best:
            best, best_k = f1, k
    chosen = [str(names[i]) if names is not None else str(i) for i in order[:best_k]]
    return best, chosen
