"""Every score this tool computes, and the failed-run rule.

Scores: macro-F1 (``f1``), micro-F1, accuracy and Matthews' correlation (``mcc``), from labels and
predictions (``classification_metrics``, scikit-learn's) or from a confusion matrix (``metrics_from_confusion``,
for ``predict``'s chunked evaluation; the same numbers), and each class's F1 by name.

Failed runs: a fine-tuned model no better than always predicting the majority class. Fine-tuning fails
outright more often than people expect (Mosbach et al. 2021 call a run "failed" when it does no better than
the majority class; Dodge et al. 2020 saw it across seeds on small GLUE sets). A failed run must never pass
for a result: trials and replicas are marked with the reason, the marks are shown wherever scores are, and
a failed point is never chosen as best while another exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Macro-F1 (``f1``), micro-F1, accuracy and Matthews' correlation (``mcc``; 0 when one class is predicted)."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    return {
        "f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(labels, predictions, average="micro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }


def per_class_f1(labels: np.ndarray, predictions: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Each class's F1 by name (label ids are positions in ``names``); 0 for a class never predicted nor present."""
    from sklearn.metrics import f1_score

    scores = f1_score(labels, predictions, labels=list(range(len(names))), average=None, zero_division=0)
    return {name: float(score) for name, score in zip(names, scores)}


def metrics_from_confusion(matrix: np.ndarray) -> dict[str, float]:
    """Macro-F1, micro-F1, accuracy and MCC from a confusion matrix, as scikit-learn computes them from the labels
    (``classification_metrics``): the macro average runs over the labels that occur as truth or as a
    prediction, and a label with no true or no predicted example has F1 0. Empty when there is no example."""
    total = int(matrix.sum())
    if total == 0:
        return {}
    hits = np.diag(matrix).astype(np.float64)
    truths, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    present = (truths + predicted) > 0
    f1 = np.divide(2 * hits, truths + predicted, out=np.zeros_like(hits), where=(truths + predicted) > 0)
    accuracy = float(hits.sum() / total)
    # Matthews' correlation, multi-class (Gorodkin 2004), as sklearn's matthews_corrcoef: 0 when undefined
    cov_tp = hits.sum() * total - float(predicted @ truths)
    cov_pp, cov_tt = total ** 2 - float(predicted @ predicted), total ** 2 - float(truths @ truths)
    mcc = cov_tp / np.sqrt(cov_tt * cov_pp) if cov_tt * cov_pp > 0 else 0.0
    return {"f1": float(f1[present].mean()), "micro_f1": accuracy, "accuracy": accuracy, "mcc": float(mcc)}


# A run whose dev macro-F1 is within this of the majority baseline's is no better than it.
TOLERANCE = 1e-9


def majority_baseline_f1(labels: np.ndarray) -> float:
    """Dev macro-F1 of always predicting the most frequent dev label (0 for an empty split).

    That class gets F1 = 2p / (1 + p) for its share p of the split, every other class 0, averaged over
    the classes present in the labels (scikit-learn's macro average over labels and predictions).
    """
    if len(labels) == 0:
        return 0.0
    counts = np.bincount(labels)
    share = counts.max() / len(labels)
    return float(2 * share / (1 + share) / np.count_nonzero(counts))


def failed_run_reason(labels: np.ndarray, predictions: np.ndarray, macro_f1: float,
                      names: Sequence[str] | None = None) -> str | None:
    """Why a run on a split with ``labels`` counts as failed, in one line; None when it did not fail.
    ``names``: the label names by id, so the reason names the class as the user's data does."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if len(np.unique(labels)) < 2:  # a dev split of one class cannot tell a model from the baseline
        return None
    classes = np.unique(predictions)
    if len(classes) == 1:
        only = int(classes[0])
        label = names[only] if names is not None and 0 <= only < len(names) else f"id {only}"
        return f"predicts one class, {label!r}, for every dev example"
    return below_baseline_reason(labels, macro_f1)


def below_baseline_reason(labels: np.ndarray, macro_f1: float) -> str | None:
    """The half of the rule that needs only the score (for replicas written before runs were marked)."""
    baseline = majority_baseline_f1(np.asarray(labels))
    if len(np.unique(labels)) >= 2 and macro_f1 <= baseline + TOLERANCE:
        return f"dev macro-F1 {macro_f1:.4f} is no better than always predicting the majority class ({baseline:.4f})"
    return None


ADVICE = ("what usually helps: more epochs or --max-steps, a higher learning rate, a larger or better "
          "pretrained model, and checking that the labels match the texts")
