"""A config file drives a whole run as the user runs it: examples/quick-cpu.toml, another metric from the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA, ROOT
from optuna_seqclf.cli.commands import cli
from optuna_seqclf.study.schema import COMMAND_CONFIG_ATTR, RECORD_ATTR


def test_quick_cpu_example_runs_tune_and_train(workdir: Path, tiny_model: Path) -> None:
    config = workdir / "quick.toml"
    text = (ROOT / "examples" / "quick-cpu.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('"examples/data/sentiment"', json.dumps(str(EXAMPLE_DATA))), encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "--config", str(config), "--model", str(tiny_model), "--metric",
                                      "accuracy", "--quiet"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\|\s+Accuracy \|\s+BatchSize \|\s+LearningRate \|", result.output)
    assert re.search(r"^Best accuracy is \S+$", result.output, flags=re.M)
    study = optuna.load_study(study_name="quick-cpu", storage="sqlite:///studies/quick-cpu.db")
    record = study.user_attrs[RECORD_ATTR]
    assert (record["epochs"], record["max_seq_length"], record["metric"]) == (1.0, 64, "dev_accuracy")
    assert sorted((t.params["batch_size"], t.params["learning_rate"]) for t in study.get_trials()) == [
        (16, 5e-05), (16, 1e-4), (32, 5e-05), (32, 1e-4)]
    assert all(t.value == t.user_attrs["dev_accuracy"] for t in study.get_trials())
    replicas = sorted(p.name for p in (workdir / "models" / "quick-cpu").iterdir() if p.is_dir())
    assert [name.rsplit("_", 1)[1] for name in replicas] == ["1", "2"]
    assert not (workdir / "logs").exists()  # no-track = true in the file
    # The study keeps the resolved options (the flag's metric over the file's default); report shows them.
    kept = study.user_attrs[COMMAND_CONFIG_ATTR]
    assert 'metric = "accuracy"' in kept and "batch-sizes = [16, 32]" in kept
    (workdir / "kept.toml").write_text(kept, encoding="utf-8")
    again = CliRunner().invoke(cli, ["config", "run", "--config", "kept.toml"])
    assert again.exit_code == 0 and again.output == kept
    reported = CliRunner().invoke(cli, ["report", "--study-name", "quick-cpu"])
    assert reported.exit_code == 0, reported.output
    markdown = (workdir / "reports" / "quick-cpu" / "report.md").read_text(encoding="utf-8")
    assert "objective: dev accuracy" in markdown and "## Configuration" in markdown and kept.strip() in markdown
    assert "Its dev F1 per class: 0 " in markdown
    listed = CliRunner().invoke(cli, ["studies"])
    assert listed.exit_code == 0, listed.output
    assert re.search(r"\| quick-cpu \|.*\| \d\.\d{4} accuracy \|", listed.output), listed.output


@pytest.mark.postgres
def test_the_kept_options_hide_the_storage_password(workdir: Path, tiny_model: Path, postgres_url: str) -> None:
    storage = postgres_url.replace("postgres@", "postgres:sekrit@")  # the test server trusts any password
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--storage", storage,
                                      "--study-name", "pw", "--batch-sizes", "8", "--learning-rates", "1e-3",
                                      "--epochs", "1", "--no-track", "--quiet"])
    assert result.exit_code == 0, result.output
    kept = optuna.load_study(study_name="pw", storage=postgres_url).user_attrs[COMMAND_CONFIG_ATTR]
    assert "sekrit" not in kept and "postgres:***@" in kept
