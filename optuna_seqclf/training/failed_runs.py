"""Failed runs: a fine-tuned model no better than always predicting the majority class.

Fine-tuning fails outright more often than people expect (Mosbach et al. 2021 call a run "failed" when
it does no better than the majority class; Dodge et al. 2020 saw it across seeds on small GLUE sets). A
failed run must never pass for a result: trials and replicas are marked with the reason, the marks are
shown wherever scores are, and a failed point is never chosen as best while another exists.
"""

from __future__ import annotations

import numpy as np

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


def failed_run_reason(labels: np.ndarray, predictions: np.ndarray, macro_f1: float) -> str | None:
    """Why a run on a split with ``labels`` counts as failed, in one line; None when it did not fail."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if len(np.unique(labels)) < 2:  # a dev split of one class cannot tell a model from the baseline
        return None
    classes = np.unique(predictions)
    if len(classes) == 1:
        return f"predicts one class (label id {int(classes[0])}) for every dev example"
    return below_baseline_reason(labels, macro_f1)


def below_baseline_reason(labels: np.ndarray, macro_f1: float) -> str | None:
    """The half of the rule that needs only the score (for replicas written before runs were marked)."""
    baseline = majority_baseline_f1(np.asarray(labels))
    if len(np.unique(labels)) >= 2 and macro_f1 <= baseline + TOLERANCE:
        return f"dev macro-F1 {macro_f1:.4f} is no better than always predicting the majority class ({baseline:.4f})"
    return None


ADVICE = ("what usually helps: more epochs or --max-steps, a higher learning rate, a larger or better "
          "pretrained model, and checking that the labels match the texts")
