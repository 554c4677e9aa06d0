"""MLflow: a study is an experiment with one parent run; trials, confirmation runs, replicas and the ensemble are
its nested child runs, read back through ``MlflowClient`` from the database the commands wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA, REFERENCE_JOB, SCRIPTED_CLI, free_port, states, wait_for
from optuna_seqclf.cli.commands import cli

mlflow = pytest.importorskip("mlflow")


def _client(uri: str) -> Any:
    return mlflow.MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str) -> dict[str, Any]:
    """The experiment's runs by name (a name seen twice: the later run under ``name#2``)."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    out: dict[str, Any] = {}
    for run in sorted(client.search_runs([exp.experiment_id], max_results=1000), key=lambda r: r.info.start_time):
        name = run.info.run_name
        out[name if name not in out else f"{name}#{sum(k.split('#')[0] == name for k in out) + 1}"] = run
    return out


def _steps(uri: str, run: Any, key: str) -> list[int]:
    return [m.step for m in _client(uri).get_metric_history(run.info.run_id, key)]


def test_a_study_is_a_parent_run_with_trials_and_replicas_nested(workdir: Path, tiny_model: Path) -> None:
    args = ["run", str(EXAMPLE_DATA), "--model", str(tiny_model), "--study-name", "ml", "--batch-sizes", "8",
            "--learning-rates", "1e-3,1e-4", "--epochs", "2", "--seeds", "1,2", "--output-dir", "out",
            "--tracker", "mlflow", *REFERENCE_JOB]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    uri = f"sqlite:///{workdir / 'mlflow.db'}"  # the default: a SQLite database where the command ran
    assert not (workdir / "logs").exists()  # Aim was not asked for
    runs = _runs(uri, "ml")
    assert set(runs) == {"ml", "trial-0", "trial-1", "replica-seed1", "replica-seed2", "ensemble"}
    parent = runs["ml"]
    assert parent.data.tags["role"] == "study" and parent.info.status == "FINISHED"
    children = [r for name, r in runs.items() if name != "ml"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.info.status for r in children} == {"FINISHED"}
    trial = runs["trial-0"]
    params = trial.data.params
    assert params["batch_size"] == "8" and params["learning_rate"] in ("0.001", "0.0001") and params["seed"] == "1"
    assert params["stage"] == "grid" and params["task"] == "single-label" and params["metric"] == "f1"
    assert _steps(uri, trial, "dev_f1") == [1, 2]  # one dev evaluation per epoch, at its epoch
    assert len(_steps(uri, trial, "train_loss")) >= 2  # the training steps' losses
    assert trial.data.tags["state"] == "COMPLETE" and trial.data.tags["trial"] == "0"
    # the tiny model learns nothing: a failed run, and MLflow says so
    assert "majority class" in trial.data.tags["failed_run"] or "one class" in trial.data.tags["failed_run"]
    assert "dev_mcc" in trial.data.metrics  # the final dev metrics not tracked per epoch
    replica = runs["replica-seed2"]
    assert replica.data.params["seed"] == "2" and replica.data.tags["role"] == "replica"
    assert "test_f1" in replica.data.metrics and "dev_f1" in replica.data.metrics
    kept = {f.path for f in _client(uri).list_artifacts(replica.info.run_id)}
    assert {"all_results.json", "test_results.json", "training_args.json", "test_predictions.txt"} <= kept
    assert not any(name.endswith(".safetensors") for name in kept)  # the weights stay in the replica's folder
    assert "test_f1" in runs["ensemble"].data.metrics and runs["ensemble"].data.params["seeds"] == "[1, 2]"

    report = CliRunner().invoke(cli, ["report", "--study-name", "ml"])
    assert report.exit_code == 0, report.output
    assert f"Kept in the study's MLflow run {parent.info.run_id}" in report.output
    figures = {f.path for f in _client(uri).list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/grid_heatmap.png"} <= figures
    assert _client(uri).get_run(parent.info.run_id).info.status == "FINISHED"  # the report did not reopen it


def test_aim_and_mlflow_together_and_the_uri_from_the_environment(workdir: Path, tiny_model: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aim")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'elsewhere' / 'runs.db'}")
    (workdir / "elsewhere").mkdir()
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--study-name", "both",
                                      "--batch-sizes", "8", "--learning-rates", "1e-3", "--epochs", "1",
                                      "--tracker", "aim,mlflow", *REFERENCE_JOB])
    assert result.exit_code == 0, result.output
    assert (workdir / "logs" / ".aim").is_dir() and not (workdir / "mlflow.db").exists()
    runs = _runs(f"sqlite:///{workdir / 'elsewhere' / 'runs.db'}", "both")
    assert set(runs) == {"both", "trial-0"} and runs["trial-0"].data.tags["state"] == "COMPLETE"


@pytest.mark.parametrize(("args", "message"), [
    (["--tracker", "mlflow,wandb"], "--tracker wandb: unknown; choose from aim, mlflow, none"),
    (["--tracker", "none,aim"], "--tracker none cannot be combined"),
    (["--tracker", "mlflow", "--mlflow-uri", "http://127.0.0.1:{port}"], "--mlflow-uri http://127.0.0.1:{port}: no "
     "MLflow tracking server answers there"),
    (["--tracker", "mlflow", "--mlflow-uri", "sqlite:///notes.txt/mlflow.db"], "notes.txt is not a writable folder"),
])
def test_bad_tracking_options_are_one_line_errors_before_anything_is_written(workdir: Path, tiny_model: Path,
                                                                           args: list[str], message: str) -> None:
    port = free_port()  # nothing listens there
    (workdir / "notes.txt").write_text("not a folder")
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--batch-sizes", "8",
                                      "--learning-rates", "1e-3", "--epochs", "1",
                                      *[a.format(port=port) for a in args]])
    assert result.exit_code == 2, result.output
    assert message.format(port=port) in result.output and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == \
        [result.output.strip().splitlines()[-1]]  # one line, after click's usage lines
    assert sorted(p.name for p in workdir.iterdir()) == ["notes.txt"]


def test_without_mlflow_the_tracker_says_how_to_install_it(workdir: Path, tiny_model: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow fails, as where the extra is not installed
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--batch-sizes", "8",
                                      "--learning-rates", "1e-3", "--epochs", "1", "--tracker", "mlflow"])
    assert result.exit_code == 2
    assert "MLflow is not installed; pip install 'optuna-seqclf[mlflow]'" in result.output
    assert list(workdir.iterdir()) == []


def _tune(model: Path, name: str, *extra: str) -> list[str]:
    return [*SCRIPTED_CLI, "tune", str(EXAMPLE_DATA), "--model", str(model), "--study-name", name, "--epochs", "2",
            "--threads", "1", "--batch-sizes", "8,16", "--learning-rates", "1e-3,1e-4", *REFERENCE_JOB,
            "--tracker", "mlflow", *extra]


@pytest.mark.slow
def test_a_trial_killed_mid_run_is_marked_killed_and_its_retry_says_so(workdir: Path, tiny_model: Path) -> None:
    """kill -9 during a trial leaves its MLflow run RUNNING; the next `tune` gives the point a new run marked as
    the retry, and marks the dead one KILLED (its state in the study: FAIL), so nothing is left RUNNING."""
    db = workdir / "studies" / "k.db"
    proc = subprocess.Popen(_tune(tiny_model, "k"), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SCRIPTED_STEP_S": "0.3"})
    try:
        wait_for(lambda: states(db).count("COMPLETE") >= 1 and states(db)[-1:] == ["RUNNING"]
                 or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    killed = max(_runs(uri, "k").values(), key=lambda r: r.info.start_time)
    assert killed.info.status == "RUNNING"  # as kill -9 left it
    again = subprocess.run(_tune(tiny_model, "k"), cwd=workdir, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    runs = _runs(uri, "k")
    dead = _client(uri).get_run(killed.info.run_id)
    assert dead.info.status == "KILLED" and dead.data.tags["state"] == "FAIL" and "settled" in dead.data.tags
    retry = [r for r in runs.values() if r.data.tags.get("retry_of") == dead.data.tags["trial"]]
    assert len(retry) == 1 and retry[0].data.tags["attempt"] == "2" and retry[0].info.status == "FINISHED"
    assert retry[0].data.params["batch_size"] == dead.data.params["batch_size"]
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    assert [r.data.tags["role"] for r in runs.values()].count("study") == 1
    assert runs["k"].info.status == "FINISHED"
    assert sorted(r.data.tags["state"] for r in runs.values() if r.data.tags["role"] == "trial") == \
        ["COMPLETE"] * 4 + ["FAIL"]
