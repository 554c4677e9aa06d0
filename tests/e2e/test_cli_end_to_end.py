"""The user's path through the real CLI: the full 36-point grid (each point exactly once: the scripted trainer,
since the protocol is the claim), a small grid trained for real, then 5 real replicas, on the example corpus."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA, REFERENCE_JOB
from optuna_seqclf.cli.commands import Injected, cli
from optuna_seqclf.settings import DEFAULT_BATCH_SIZES, DEFAULT_LEARNING_RATES
from scripted import ScriptedTrainer

REPLICA_FILES = (
    "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "train_results.json",
    "eval_results.json", "test_results.json", "all_results.json", "trainer_state.json",
    "test_predictions.txt", "predict_results_sentiment.txt",
)


def _test_rows() -> list[tuple[str, str]]:
    lines = (EXAMPLE_DATA / "test.txt").read_text(encoding="utf-8").splitlines()[1:]
    return [tuple(line.split("\t")) for line in lines if line.strip()]  # type: ignore[misc]


REFERENCE = list(REFERENCE_JOB)


@pytest.fixture(scope="module")
def tuned(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run `tune` once on the full default grid with the scripted trainer (module-scoped), as the reference
    does: every point for all its epochs, the single seed's choice (``REFERENCE``)."""
    work = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        result = CliRunner().invoke(
            cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--epochs", "2", "--study-name", "e2e",
                  "--log-dir", "logs", *REFERENCE], obj=Injected(ScriptedTrainer()),
        )
    assert result.exit_code == 0, result.output
    return {"work": work, "output": result.output, "stdout": result.stdout, "model": tiny_model}


def test_tune_runs_every_grid_point_exactly_once(tuned: dict[str, object]) -> None:
    work = tuned["work"]
    assert isinstance(work, Path)
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{work / 'studies' / 'e2e.db'}")
    trials = study.get_trials()
    assert len(trials) == 36
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    points = {(t.params["batch_size"], t.params["learning_rate"]) for t in trials}
    assert points == {(bs, lr) for bs in DEFAULT_BATCH_SIZES for lr in DEFAULT_LEARNING_RATES}
    for t in trials:
        assert 0.0 <= t.value <= 1.0
        for attr in ("dev_accuracy", "dev_micro_f1", "dev_loss"):
            assert attr in t.user_attrs
        assert 0.0 <= t.user_attrs["dev_accuracy"] <= 1.0


def test_tune_prints_grid_table_and_best(tuned: dict[str, object]) -> None:
    out = str(tuned["stdout"])
    assert re.search(r"\|\s+F1-Score \|\s+BatchSize \|\s+LearningRate \|", out)
    rows = re.findall(r"^\|\s+(\d+) \|\s+([0-9.]+) \|\s+(\d+) \|\s+([0-9.e-]+) \|(?:\s+([^|]*?) \|)?$", out,
                      flags=re.M)
    assert len(rows) == 36
    best = re.search(r"^Best Configuration is (\d+) (\S+)$", out, flags=re.M)
    best_f1 = re.search(r"^Best F1 is (\S+)$", out, flags=re.M)
    assert best and best_f1
    assert float(best_f1.group(1)) == pytest.approx(max(float(r[1]) for r in rows), abs=1e-6)
    # The printed best is one of the rows with the best F1.
    assert (best.group(1), float(best.group(2))) in {(r[2], float(r[3])) for r in rows
                                                     if float(r[1]) == pytest.approx(float(best_f1.group(1)), abs=1e-6)}


def test_a_small_grid_trained_for_real_marks_its_failed_runs(workdir: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--epochs", "1",
                                      "--study-name", "real", "--no-track", "--batch-sizes", "8,16",
                                      "--learning-rates", "1e-3"])
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^\|\s+(\d+) \|\s+([0-9.]+) \|\s+(\d+) \|\s+([0-9.e-]+) \|(?:\s+([^|]*?) \|)?$", result.stdout,
                      flags=re.M)
    assert len(rows) == 2
    # The tiny random model learns nothing: every point predicts the majority class, and says so (exit 0).
    assert all(r[4].startswith("failed run") for r in rows)
    assert "Every complete grid point is a failed run" in result.stdout and "more epochs" in result.stdout
    assert "predicts one class, '0', for every dev example" in result.output  # the label by its name


def test_second_tune_trains_nothing(tuned: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    work = tuned["work"]
    assert isinstance(work, Path)
    monkeypatch.chdir(work)
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tuned["model"]), "--epochs", "2",
                                      "--study-name", "e2e", "--no-track", *REFERENCE])
    assert result.exit_code == 0, result.output
    assert "nothing to train" in result.output
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{work / 'studies' / 'e2e.db'}")
    assert len(study.get_trials()) == 36
    assert "Best Configuration is" in result.stdout


def test_train_writes_five_complete_replicas(tuned: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    work = tuned["work"]
    assert isinstance(work, Path)
    monkeypatch.chdir(work)
    result = CliRunner().invoke(cli, ["train", "--study-name", "e2e", "--output-dir", "replicas", "--no-track"])
    assert result.exit_code == 0, result.output
    best = re.search(r"^Best Configuration is (\d+) (\S+)$", str(tuned["stdout"]), flags=re.M)
    assert best
    bs, lr = best.group(1), best.group(2)
    out = work / "replicas"
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == [f"bert-custom-model_sentiment_{bs}_{lr}_2_{seed}" for seed in range(1, 6)]
    test_rows = _test_rows()
    for name in dirs:
        d = out / name
        for f in REPLICA_FILES:
            assert (d / f).is_file(), f"{name}/{f} missing"
        assert not [p for p in d.iterdir() if p.name.startswith(("checkpoint", "optimizer", "scheduler"))]
        results = json.loads((d / "all_results.json").read_text())
        for key in ("eval_f1", "eval_accuracy", "test_f1", "test_accuracy"):
            assert 0.0 <= results[key] <= 1.0
        evals = json.loads((d / "eval_results.json").read_text())
        assert {"eval_f1", "eval_accuracy", "eval_loss", "eval_samples", "epoch"} <= set(evals)
        assert evals["eval_samples"] == 12 and evals["epoch"] == 2.0
        preds = (d / "test_predictions.txt").read_text().splitlines()
        assert len(preds) == len(test_rows) and set(preds) <= {"0", "1"}
        table = (d / "predict_results_sentiment.txt").read_text().splitlines()
        assert table[0] == "index\tprediction"
        assert table[1:] == [f"{i}\t{p}" for i, p in enumerate(preds)]
        model = AutoModelForSequenceClassification.from_pretrained(d)
        tok = AutoTokenizer.from_pretrained(d)
        assert model.config.id2label == {0: "0", 1: "1"}
        reloaded = []
        for text, _ in test_rows:
            logits = model(**tok(text, return_tensors="pt", truncation=True, max_length=128)).logits
            reloaded.append(model.config.id2label[int(logits.argmax(-1))])
        assert reloaded == preds
        acc = sum(p == gold for p, (_, gold) in zip(preds, test_rows)) / len(test_rows)
        assert results["test_accuracy"] == pytest.approx(acc)
    summary = json.loads((out / "replicas_summary.json").read_text())
    assert [r["seed"] for r in summary["replicas"]] == [1, 2, 3, 4, 5]
    f1s = [r["test_f1"] for r in summary["replicas"]]
    assert summary["mean"]["test_f1"] == pytest.approx(sum(f1s) / 5)
    assert summary["params"] == {"batch_size": int(bs), "learning_rate": float(lr)}
    assert re.search(r"mean ± std", result.stdout)
    assert not math.isnan(summary["std"]["test_f1"])
    # A second run reuses all five replicas and trains nothing.
    again = CliRunner().invoke(cli, ["train", "--study-name", "e2e", "--output-dir", "replicas", "--no-track"])
    assert again.exit_code == 0, again.output
    assert again.output.count("exists, reused") == 5
