"""Multi-label and regression through the CLI as a user runs them (tiny model): tune, then train, and the
replicas loaded by transformers' own ``pipeline()``."""

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


def test_multi_label_tune_train_and_pipeline(multi_label: Path, tiny_model: Path, workdir: Path) -> None:
    from transformers import pipeline

    tuned = CliRunner().invoke(cli, ["tune", str(multi_label), "--task", "multi-label", "--text-column", "text",
                                     "--label-column", "labels", "--model", str(tiny_model), "--study-name", "ml",
                                     *TUNE])
    assert tuned.exit_code == 0, tuned.output
    assert re.search(r"^Best micro-F1 is [0-9.]+$", tuned.output, flags=re.M), tuned.output
    trained = CliRunner().invoke(cli, ["train", "--study-name", "ml", "-o", "out", "--seeds", "1,2", "--no-track",
                                       "--quiet"])
    assert trained.exit_code == 0, trained.output
    replica = next(p for p in (workdir / "out").iterdir() if p.is_dir() and p.name.endswith("_1"))
    config = json.loads((replica / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "long", "1": "positive"}
    results = json.loads((replica / "all_results.json").read_text())
    assert {"eval_micro_f1", "eval_samples_f1", "eval_subset_accuracy", "test_micro_f1"} <= set(results)
    lines = (replica / "test_predictions.txt").read_text().splitlines()
    assert len(lines) == len(_examples("test")) and set(lines) <= {"", "long", "positive", "long,positive"}
    # transformers loads the replica as a multi-label classifier: a sigmoid per label, as our evaluation has it
    texts = [text for text, _ in _examples("test")][:3]
    scores = pipeline("text-classification", model=str(replica), top_k=None, device="cpu")(texts)
    from optuna_seqclf.predict.predictor import Predictor

    ours = Predictor([replica]).predict_proba(texts)
    for row, probabilities in zip(scores, ours):
        by_name = {item["label"]: item["score"] for item in row}
        assert by_name == pytest.approx({"long": probabilities[0], "positive": probabilities[1]}, abs=1e-5)
    summary = json.loads((workdir / "out" / "replicas_summary.json").read_text())
    assert 0.0 <= summary["ensemble"]["test_micro_f1"] <= 1.0


def test_regression_tunes_on_pairs_and_train_says_what_is_missing(workdir: Path, tiny_model: Path) -> None:
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
    trained = CliRunner().invoke(cli, ["train", "--study-name", "sts", "-o", "out", "--no-track", "--quiet"])
    assert trained.exit_code == 1 and "replicas of --task regression are not built yet" in trained.output
    assert not (workdir / "out").exists()
    # a resume under another task is another study's identity
    other = CliRunner().invoke(cli, ["tune", str(folder), "--text-column", "s1", "--label-column", "score",
                                     "--model", str(tiny_model), "--study-name", "sts", *TUNE])
    assert other.exit_code != 0 and "did you mean --task regression" in other.output


def test_metric_of_another_task_is_refused(multi_label: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(multi_label), "--task", "multi-label", "--metric", "pearson",
                                      "--text-column", "text", "--label-column", "labels", "--model", str(tiny_model)])
    assert result.exit_code == 2 and "--metric 'pearson' does not fit --task multi-label" in result.output
