"""Multi-label and regression through the CLI as a user runs them (tiny model): tune, train, predict, report,
and the replicas loaded by transformers' own ``pipeline()``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA
from optuna_seqclf.cli.commands import cli

TUNE = ("--batch-sizes", "8", "--learning-rates", "1e-2,1e-3", "--epochs", "2", "--no-track", "--quiet",
        "--confirm-top", "0")


def _examples(split: str) -> list[tuple[str, int]]:
    lines = (EXAMPLE_DATA / f"{split}.txt").read_text(encoding="utf-8").splitlines()[1:]
    return [(line.split("\t")[0], int(line.split("\t")[1])) for line in lines if line.strip()]


@pytest.fixture()
def multi_label(workdir: Path) -> Path:
    """The example corpus as multi-label JSON Lines: "positive" from its label, "long" from the text's length
    (some examples have neither)."""
    folder = workdir / "multi"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        rows = [{"text": text, "labels": [n for n, on in (("positive", label == 1), ("long", len(text) > 40)) if on]}
                for text, label in _examples(split)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_multi_label_tune_train_predict_and_pipeline(multi_label: Path, tiny_model: Path, workdir: Path) -> None:
    from transformers import pipeline

    from optuna_seqclf.predict.predictor import Predictor

    tuned = CliRunner().invoke(cli, ["tune", str(multi_label), "--task", "multi-label", "--text-column", "text",
                                     "--label-column", "labels", "--model", str(tiny_model), "--study-name", "ml",
                                     "--thresholds", "tuned", *TUNE])
    assert tuned.exit_code == 0, tuned.output
    assert re.search(r"^Best micro-F1 is [0-9.]+$", tuned.output, flags=re.M), tuned.output
    trained = CliRunner().invoke(cli, ["train", "--study-name", "ml", "-o", "out", "--seeds", "1,2", "--no-track",
                                       "--quiet"])
    assert trained.exit_code == 0, trained.output
    replica = next(p for p in (workdir / "out").iterdir() if p.is_dir() and p.name.endswith("_1"))
    config = json.loads((replica / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "long", "1": "positive"}
    assert len(config["thresholds"]) == 2 and all(0 < t < 1 for t in config["thresholds"])  # tuned on dev
    results = json.loads((replica / "all_results.json").read_text())
    assert {"eval_micro_f1", "eval_samples_f1", "eval_subset_accuracy", "test_micro_f1"} <= set(results)
    lines = (replica / "test_predictions.txt").read_text().splitlines()
    assert len(lines) == len(_examples("test")) and set(lines) <= {"", "long", "positive", "long,positive"}
    # transformers loads the replica as a multi-label classifier: a sigmoid per label, as our evaluation has it
    texts = [text for text, _ in _examples("test")][:3]
    scores = pipeline("text-classification", model=str(replica), top_k=None, device="cpu")(texts)
    ours = Predictor([replica]).predict_proba(texts)
    for row, probabilities in zip(scores, ours):
        by_name = {item["label"]: item["score"] for item in row}
        assert by_name == pytest.approx({"long": probabilities[0], "positive": probabilities[1]}, abs=1e-5)
    summary = json.loads((workdir / "out" / "replicas_summary.json").read_text())
    assert 0.0 <= summary["ensemble"]["test_micro_f1"] <= 1.0 and summary["columns"][0] == "dev_micro_f1"
    assert "Dev micro-F1" in trained.output and "Test macro-F1" in trained.output
    # predict with the ensemble: the labels at the ensemble's thresholds, the multi-label scores
    ensemble = Predictor.from_pretrained(workdir / "out")
    assert ensemble.thresholds == summary["ensemble"]["thresholds"] and len(ensemble.thresholds) == 2
    predicted = CliRunner().invoke(cli, ["predict", "out", str(multi_label / "test.jsonl"), "--text-column", "text",
                                         "--label-column", "labels", "-o", "p.jsonl", "--metrics-json", "m.json"])
    assert predicted.exit_code == 0, predicted.output
    rows = [json.loads(line) for line in (workdir / "p.jsonl").read_text().splitlines()]
    probabilities = ensemble.predict_proba([r["text"] for r in map(json.loads, (multi_label / "test.jsonl")
                                                                   .read_text().splitlines())])
    for row, p in zip(rows, probabilities):
        chosen = [name for name, prob, cut in zip(("long", "positive"), p, ensemble.thresholds) if prob >= cut]
        assert row["labels"] == chosen and len(row["scores"]) == len(chosen)
    metrics = json.loads((workdir / "m.json").read_text())
    assert metrics["task"] == "multi-label" and metrics["examples"] == len(rows)
    assert metrics["micro_f1"] == pytest.approx(summary["ensemble"]["test_micro_f1"], abs=1e-6)
    assert re.search(r"labelled examples: micro-F1 [0-9.]+, macro-F1 [0-9.]+, samples-F1", predicted.output)
    report = CliRunner().invoke(cli, ["report", "--study-name", "ml", "-o", "report"])
    assert report.exit_code == 0, report.output
    assert "| Seed | Dev micro-F1 | Test micro-F1 | Test macro-F1 |" in (workdir / "report" / "report.md").read_text()


def test_regression_tune_train_predict_and_pipeline(workdir: Path, tiny_model: Path) -> None:
    from transformers import pipeline

    folder = workdir / "sts"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        rows = [f"{text}\t{text[::-1]}\t{(label * 3 + len(text) % 3) / 1.5:.3f}" for text, label in _examples(split)]
        (folder / f"{split}.tsv").write_text("s1\ts2\tscore\n" + "\n".join(rows) + "\n", encoding="utf-8")
    tuned = CliRunner().invoke(cli, ["tune", str(folder), "--task", "regression", "--text-column", "s1",
                                     "--text-pair-column", "s2", "--label-column", "score", "--model", str(tiny_model),
                                     "--study-name", "sts", *TUNE])
    assert tuned.exit_code == 0, tuned.output
    assert re.search(r"^Best Pearson is -?[0-9.]+$", tuned.output, flags=re.M), tuned.output
    trained = CliRunner().invoke(cli, ["train", "--study-name", "sts", "-o", "out", "--seeds", "1,2", "--no-track",
                                       "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert "Dev Pearson" in trained.output and "Test Spearman" in trained.output
    replica = next(p for p in (workdir / "out").iterdir() if p.is_dir() and p.name.endswith("_1"))
    config = json.loads((replica / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1  # num_labels 1
    results = json.loads((replica / "all_results.json").read_text())
    assert {"eval_pearson", "eval_spearman", "eval_mse", "test_mae"} <= set(results)
    scores = [float(line) for line in (replica / "test_predictions.txt").read_text().splitlines()]
    test_rows = (folder / "test.tsv").read_text().splitlines()[1:]
    assert len(scores) == len(test_rows)
    # transformers' pipeline gives the raw score of a regression model; ours is the same number
    pairs = [dict(zip(("text", "text_pair"), row.split("\t")[:2])) for row in test_rows[:3]]
    theirs = pipeline("text-classification", model=str(replica), device="cpu")(pairs)
    from optuna_seqclf.predict.predictor import Predictor

    ours = Predictor([replica]).predict([p["text"] for p in pairs], [p["text_pair"] for p in pairs])
    assert [t["score"] for t in theirs] == pytest.approx([p.score for p in ours], abs=1e-5)
    summary = json.loads((workdir / "out" / "replicas_summary.json").read_text())
    predicted = CliRunner().invoke(cli, ["predict", "out", str(folder / "test.tsv"), "--text-column", "s1",
                                         "--text-pair-column", "s2", "--label-column", "score", "-o", "p.tsv",
                                         "--metrics-json", "m.json"])
    assert predicted.exit_code == 0, predicted.output
    lines = (workdir / "p.tsv").read_text().splitlines()
    assert lines[0] == "index\tscore" and len(lines) == len(test_rows) + 1
    metrics = json.loads((workdir / "m.json").read_text())
    assert metrics["pearson"] == pytest.approx(summary["ensemble"]["test_pearson"], abs=1e-5)
    assert re.search(r"labelled examples: Pearson -?[0-9.]+, Spearman -?[0-9.]+, MSE [0-9.]+", predicted.output)
    report = CliRunner().invoke(cli, ["report", "--study-name", "sts", "-o", "report"])
    assert report.exit_code == 0, report.output
    text = (workdir / "report" / "report.md").read_text()
    assert "| Seed | Dev Pearson | Test Pearson | Test Spearman |" in text and "dev accuracy" not in text
    assert (workdir / "report" / "replicas_test_f1.png").stat().st_size > 0
    # a resume under another task is another study's identity
    other = CliRunner().invoke(cli, ["tune", str(folder), "--text-column", "s1", "--label-column", "score",
                                     "--model", str(tiny_model), "--study-name", "sts", *TUNE])
    assert other.exit_code != 0 and "did you mean --task regression" in other.output


def test_metric_of_another_task_is_refused(multi_label: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(multi_label), "--task", "multi-label", "--metric", "pearson",
                                      "--text-column", "text", "--label-column", "labels", "--model", str(tiny_model)])
    assert result.exit_code == 2 and "--metric 'pearson' does not fit --task multi-label" in result.output


def test_thresholds_tuned_is_for_multi_label(workdir: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--thresholds", "tuned", "--model", str(tiny_model),
                                      *TUNE])
    assert result.exit_code != 0 and "--thresholds tuned is for --task multi-label" in result.output
    assert "Traceback" not in result.output
