"""MLflow: a study is an experiment with one parent run; trials, confirmation runs, replicas and the ensemble are
its nested child runs, read back through ``MlflowClient`` from the database the commands wrote."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
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
    (["--tracker", "mlflow", "--mlflow-uri", "postgresql+psycopg://me:secret@127.0.0.1:{port}/runs"],
     "--mlflow-uri postgresql+psycopg://me:***@127.0.0.1:{port}/runs: cannot connect (OperationalError: "),
    (["--tracker", "mlflow", "--mlflow-uri", "ftp://host/runs"], "--mlflow-uri ftp://host/runs: MLflow keeps no "
     "runs at ftp:// URIs"),
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
    assert "secret" not in result.output  # a password in the URI is never shown
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
    proc = subprocess.Popen(_tune(tiny_model, "k"), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "SCRIPTED_STEP_S": "0.15"})
    try:
        wait_for(lambda: (states(db).count("COMPLETE") >= 1 and states(db)[-1:] == ["RUNNING"])
                 or proc.poll() is not None)
        time.sleep(0.6)  # into the trial (a step is 0.15 s)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    number = str(states(db).index("RUNNING"))
    [killed] = [r for r in _runs(uri, "k").values() if r.data.tags.get("trial") == number]
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


def _render(url: str, profile: Path) -> str:
    """What headless Chromium shows at ``url``, as text."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--window-size=1400,1000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S))
    return html.unescape(re.sub(r"\s+", " ", text))


class _MlflowServer:
    """``mlflow server`` on 127.0.0.1 over ``backend`` (artifacts served through it), in ``folder``."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.log = open(folder / "server.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                                      "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--workers", "1"],
                                     cwd=folder, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # its uvicorn workers are children: stop them all
        wait_for(self._up, timeout=180)

    def _up(self) -> bool:
        assert self.proc.poll() is None, (Path(self.log.name).read_text())
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.log.close()


def _database(postgres_url: str, name: str) -> str:
    """A new database on the test's PostgreSQL server (MLflow and Optuna both keep an ``alembic_version``)."""
    import psycopg

    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name}")
        con.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_log_to_one_tracking_server_on_postgresql_which_may_go_away(workdir: Path, tiny_model: Path,
                                                                            postgres_url: str) -> None:
    server = _MlflowServer(_database(postgres_url, "mlflow_runs"), workdir / "server")
    try:
        tuned = subprocess.run(_tune(tiny_model, "shared", "--workers", "2", "--mlflow-uri", server.url,
                                     "--confirm-top", "2", "--confirm-seeds", "1"),
                               cwd=workdir, capture_output=True, text=True, timeout=300)
        assert tuned.returncode == 0, tuned.stderr
        trained = subprocess.run([*SCRIPTED_CLI, "train", "--study-name", "shared", "--seeds", "1", "-o", "out",
                                  "--tracker", "mlflow", "--mlflow-uri", server.url], cwd=workdir,
                                 capture_output=True, text=True, timeout=300)
        assert trained.returncode == 0, trained.stderr
        runs = _runs(server.url, "shared")
        trials = {name: r for name, r in runs.items() if r.data.tags.get("role") == "trial"}
        assert sorted(trials) == [f"trial-{n}" for n in range(6)]  # each trial once, from two workers
        confirming = [r for r in trials.values() if r.data.tags["stage"] == "confirm"]  # the best 2, with seed 2
        assert len(confirming) == 2 and {r.data.params["seed"] for r in confirming} == {"2"}
        parent = runs["shared"]
        assert [r.data.tags.get("role") for r in runs.values()].count("study") == 1
        assert {r.data.tags["mlflow.parentRunId"] for n, r in runs.items() if n != "shared"} == {parent.info.run_id}
        assert {r.info.status for r in runs.values()} == {"FINISHED"}
        kept = {f.path for f in _client(server.url).list_artifacts(runs["replica-seed1"].info.run_id)}
        assert "all_results.json" in kept  # through the server's artifact proxy
        page = _render(f"{server.url}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}",
                       workdir / "profile")
        assert "Status Finished" in page and "Child runs" in page and "role : study" in page
        assert all(name in page for name in ("trial-0", "trial-3", "replica-seed1")), page[:2000]

        # the server goes away in the middle of a study: warnings, and every trial still in the study
        proc = subprocess.Popen(_tune(tiny_model, "gone", "--mlflow-uri", server.url, "--epochs", "1"), cwd=workdir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "SCRIPTED_STEP_S": "0.1"})
        db = workdir / "studies" / "gone.db"
        wait_for(lambda: states(db).count("COMPLETE") >= 1 or proc.poll() is not None)
        server.stop()
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert f"warning: MLflow at {server.url}: " in err and "the study goes on" in err
        assert "Traceback" not in err
        assert states(db) == ["COMPLETE"] * 4  # the server went after the first of them
    finally:
        if server.proc.poll() is None:
            server.stop()


@pytest.mark.slow
def test_local_workers_share_the_default_sqlite_database(workdir: Path, tiny_model: Path) -> None:
    tuned = subprocess.run(_tune(tiny_model, "local", "--workers", "2", "--epochs", "1"), cwd=workdir,
                           capture_output=True, text=True, timeout=300)
    assert tuned.returncode == 0, tuned.stderr
    assert "warning" not in tuned.stderr and "locked" not in tuned.stderr
    runs = _runs(f"sqlite:///{workdir / 'mlflow.db'}", "local")
    assert sorted(runs) == ["local", "trial-0", "trial-1", "trial-2", "trial-3"]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
