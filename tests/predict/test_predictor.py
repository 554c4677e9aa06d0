"""Predictor: one model or a seed ensemble, labels and probabilities in input order, scores, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TEXTS
from optuna_seqclf import ModelLoadError
from optuna_seqclf.predict.predictor import Predictor
from optuna_seqclf.training.metrics import classification_metrics, metrics_from_confusion


def test_predictions_match_the_transformers_pipeline_in_input_order(classifiers: list[Path]) -> None:
    from transformers import pipeline

    predictor = Predictor([classifiers[0]])
    ours = predictor.predict(TEXTS, batch_size=7)  # several length-sorted batches
    theirs = pipeline("text-classification", model=str(classifiers[0]), device="cpu", top_k=None)(TEXTS)
    assert [p.label for p in ours] == [max(t, key=lambda d: d["score"])["label"] for t in theirs]
    for mine, their in zip(ours, theirs):
        assert mine.probabilities == pytest.approx({d["label"]: d["score"] for d in their}, abs=1e-5)
        assert mine.score == max(mine.probabilities.values())


def test_the_ensemble_averages_its_models_probabilities(classifiers: list[Path]) -> None:
    each = [Predictor([folder]).predict_proba(TEXTS) for folder in classifiers]
    ensemble = Predictor(classifiers, seeds=(1, 2, 3))
    assert ensemble.kind == "ensemble of seeds 1,2,3"
    np.testing.assert_allclose(ensemble.predict_proba(TEXTS, batch_size=5), np.mean(each, axis=0), atol=1e-6)
    assert ensemble.predict_proba([]).shape == (0, 3)


def test_metrics_from_a_confusion_matrix_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for classes in (2, 3, 5):
        truth = rng.integers(0, classes, 200)
        guess = np.where(rng.random(200) < 0.6, truth, rng.integers(0, 2, 200))  # class 2+ never predicted
        matrix = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(matrix, (truth, guess), 1)
        assert metrics_from_confusion(matrix) == pytest.approx(classification_metrics(truth, guess))
    absent = np.array([[3, 1, 0], [2, 4, 0], [0, 0, 0]])  # a label that occurs nowhere is not averaged
    truth, guess = np.array([0] * 4 + [1] * 6), np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
    assert metrics_from_confusion(absent) == pytest.approx(classification_metrics(truth, guess))


def test_evaluate_leaves_out_and_counts_labels_the_model_does_not_know(classifiers: list[Path]) -> None:
    predictor = Predictor([classifiers[0]])
    predicted = [p.label for p in predictor.predict(TEXTS[:6])]
    evaluation = predictor.evaluate(TEXTS[:6], [*predicted[:4], "sarcastic", "sarcastic"])
    assert evaluation.examples == 4 and evaluation.unknown == 2
    assert evaluation.metrics["accuracy"] == 1.0 and sum(map(sum, evaluation.confusion)) == 4


def test_refuses_what_is_not_a_safe_sequence_classifier(tiny_model: Path, classifiers: list[Path],
                                                        tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a sequence classifier"):
        Predictor.from_pretrained(tiny_model)  # a BertModel: no classification head
    pickled = shutil.copytree(classifiers[0], tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only safetensors weights are loaded"):
        Predictor.from_pretrained(pickled)
    with pytest.raises(ModelLoadError, match="not found"):
        Predictor.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ModelLoadError, match="--replica needs a replicas folder"):
        Predictor.from_pretrained(classifiers[0], replica=1)


def test_multi_label_and_regression_are_scored_against_their_labels() -> None:
    from types import SimpleNamespace

    from optuna_seqclf.predict.predictor import Tally
    from optuna_seqclf.training.outputs import decide_from_probabilities

    def stub(task: str, labels: tuple[str, ...], thresholds: list[float] | None = None) -> Predictor:
        return SimpleNamespace(task=task, labels=labels, decide=lambda p: decide_from_probabilities(  # type: ignore
            task, p, thresholds))

    tally = Tally(stub("multi-label", ("anger", "joy"), [0.5, 0.2]))
    # joy at 0.3 passes its tuned 0.2; "pride" is no label of the model's: left out and counted
    tally.add(np.array([[0.9, 0.3], [0.1, 0.1], [0.6, 0.6]]), [("anger", "joy"), (), ("pride",)])
    evaluation = tally.evaluation()
    assert (evaluation.examples, evaluation.unknown, evaluation.task) == (2, 1, "multi-label")
    assert evaluation.metrics["micro_f1"] == 1.0 and evaluation.metrics["subset_accuracy"] == 1.0
    assert evaluation.confusion == ()
    scores = Tally(stub("regression", ("LABEL_0",)))
    scores.add(np.array([[1.0], [2.0], [2.5]]), [1.5, 2.5, 3.5])
    assert scores.evaluation().metrics["pearson"] == pytest.approx(np.corrcoef([1, 2, 2.5], [1.5, 2.5, 3.5])[0, 1])
    assert scores.evaluation().metrics["mae"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
