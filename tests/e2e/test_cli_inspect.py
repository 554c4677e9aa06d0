"""Seeing a study: `studies`, `report` (markdown + plots), `dashboard` beside a live `tune`, progress output."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA, ROOT, SCRIPTED_CLI
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, tune
from optuna_seqclf.cli.commands import cli
from optuna_seqclf.training.loop import fine_tune

ARTIFACTS = ROOT / "test-artifacts"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _fails_on_16_1e4(*args, **kwargs):  # type: ignore[no-untyped-def]
    """fine_tune, except that point (16, 1e-4) always fails: a trainer given through the seam."""
    if args[5] == HParams(16, 1e-4):
        raise RuntimeError("CUDA error: device-side assert triggered (simulated)")
    return fine_tune(*args, **kwargs)


@pytest.fixture(scope="module")
def reported_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2x2 study whose point (16, 1e-4) always fails, and 3 replicas of its best point: trained once for
    every test of this module that reads them."""
    folder = tmp_path_factory.mktemp("reported")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        tune(StudySpec(study_name="rep", storage="sqlite:///studies/rep.db", max_retries=0), DataSpec(EXAMPLE_DATA),
             TrainSettings(model=str(tiny_model), epochs=3), SearchSpace((8, 16), (1e-3, 1e-4)), tracking=None,
             trainer=_fails_on_16_1e4)
        trained = CliRunner().invoke(cli, ["train", "--study-name", "rep", "-o", "out", "--seeds", "1,2,3",
                                           "--no-track"])
        assert trained.exit_code == 0, trained.output
    return folder


@pytest.fixture()
def reported(reported_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(reported_dir)
    return reported_dir


def test_report_writes_markdown_heatmap_curves_and_replicas(reported: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--study-name", "rep"])
    assert result.exit_code == 0, result.output
    folder = reported / "reports" / "rep"
    text = (folder / "report.md").read_text(encoding="utf-8")
    summary = json.loads((reported / "out" / "replicas_summary.json").read_text())
    bs, lr = summary["params"]["batch_size"], summary["params"]["learning_rate"]
    assert f"**Best configuration: batch size {bs}, learning rate {lr:g}**" in text
    assert "4 points, 3 complete, 1 failed" in text
    assert "batch size 16, learning rate 0.0001: RuntimeError: CUDA error: device-side assert" in text
    assert "| F1-Score | BatchSize | LearningRate |" in text
    assert f"mean {summary['mean']['test_f1']:.4f}, 95% confidence interval of the mean" in text
    assert "(Student's t, 2 degrees of freedom)" in text
    ensemble = summary["ensemble"]
    assert (f"Ensemble of the 3 replicas (their probabilities averaged): dev F1 {ensemble['dev_f1']:.4f}, "
            f"test F1 {ensemble['test_f1']:.4f}") in text
    for seed in (1, 2, 3):  # the tiny model learns nothing: each replica is marked a failed run
        assert f"\n| {seed} (failed run) | " in text
    assert "Every complete grid point is a failed run" in text and "| failed run" in text
    assert "## Expected best vs budget" in text and "| 3 | " in text  # 3 complete grid trials
    for name in ("grid_heatmap.png", "learning_curves.png", "replicas_test_f1.png", "expected_best.png"):
        assert f"]({name})" in text
        width, height = _png_size(folder / name)
        assert width >= 600 and height >= 300
    for name in ("grid_heatmap.png", "learning_curves.png", "replicas_test_f1.png", "expected_best.png"):
        (ARTIFACTS / "report").mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / name, ARTIFACTS / "report" / name)


def test_report_learning_curves_come_from_every_epoch(reported: Path) -> None:
    import optuna

    study = optuna.load_study(study_name="rep", storage="sqlite:///studies/rep.db")
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert sorted(trial.intermediate_values) == [1, 2, 3]  # dev F1 after each epoch, as Optuna values
        history = trial.user_attrs["dev_history"]
        assert [h["epoch"] for h in history] == [1, 2, 3]
        assert history[-1]["f1"] == pytest.approx(trial.value)
    assert study.metric_names == ["dev macro-F1"]


def test_studies_lists_done_failed_and_best(reported: Path) -> None:
    result = CliRunner().invoke(cli, ["studies"])
    assert result.exit_code == 0, result.output
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in result.output.splitlines()
            if line.startswith("|")]
    cells = next(r for r in rows if r[0] == "rep")
    summary = json.loads((reported / "out" / "replicas_summary.json").read_text())
    # 3 done, 1 failed with an error, 3 failed runs (the tiny model learns nothing), 0 running
    assert cells[:5] == ["rep", "3/4", "1", "3", "0"]
    assert float(cells[5]) == pytest.approx(summary["best_dev_f1"], abs=1e-4)
    assert cells[6] == f"{summary['params']['batch_size']} {summary['params']['learning_rate']:g}"


def test_studies_and_report_errors_are_one_line(workdir: Path) -> None:
    runner = CliRunner()
    empty = runner.invoke(cli, ["studies"])
    assert empty.exit_code == 0 and "No studies found" in empty.output
    missing = runner.invoke(cli, ["report", "--study-name", "nope"])
    assert missing.exit_code == 1 and "no such study file" in missing.output and "Traceback" not in missing.output
    assert not (workdir / "studies" / "nope.db").exists() and not (workdir / "reports").exists()
    dash = runner.invoke(cli, ["dashboard"])
    assert dash.exit_code == 2 and "--study-name" in dash.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _render(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    chromium = _chromium()
    assert chromium
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--window-size=1400,1000", *extra, url],
        capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_dashboard_beside_a_live_tune(workdir: Path, tiny_model: Path) -> None:
    if _chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    tune = subprocess.Popen(
        [sys.executable, "-m", "optuna_seqclf", "tune", str(EXAMPLE_DATA), "--model", str(tiny_model),
         "--study-name", "live", "--epochs", "4", "--threads", "1", "--no-track", "--batch-sizes", "8,16,32",
         "--learning-rates", "1e-3,1e-4"], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = workdir / "studies" / "live.db"
    port = _free_port()
    dash = None
    try:
        deadline = time.monotonic() + 120
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        dash = subprocess.Popen([sys.executable, "-m", "optuna_seqclf", "dashboard", "--study-name", "live",
                                 "--port", str(port)], cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        polls, seen_running = 0, False
        while tune.poll() is None:  # read the study as fast as we can while it is being written
            try:
                studies = _get_json(f"{base}/api/studies")["study_summaries"]
                if studies:
                    detail = _get_json(f"{base}/api/studies/{studies[0]['study_id']}")
                    seen_running |= any(t["state"] == "Running" for t in detail["trials"])
                    polls += 1
            except OSError:
                assert dash.poll() is None, dash.communicate()[1]
            time.sleep(0.05)
        _, tune_err = tune.communicate()
        assert tune.returncode == 0, tune_err
        assert "locked" not in tune_err and "Traceback" not in tune_err
        assert polls >= 5 and seen_running
        summaries = _get_json(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["live"]
        study_id = summaries[0]["study_id"]
        deadline = time.monotonic() + 30  # the dashboard caches trial lists for 2 s
        while True:
            detail = _get_json(f"{base}/api/studies/{study_id}")
            done = len(detail["trials"]) == 6 and {t["state"] for t in detail["trials"]} == {"Complete"}
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(detail["trials"]) == 6 and {t["state"] for t in detail["trials"]} == {"Complete"}
        assert {(p["batch_size"], p["learning_rate"]) for p in (
            {x["name"]: float(x["param_external_value"]) for x in t["params"]} for t in detail["trials"])} == {
            (bs, lr) for bs in (8.0, 16.0, 32.0) for lr in (1e-3, 1e-4)}
        # The best trial's kept weights download from the dashboard, byte for byte what the study recorded
        [stored] = list((workdir / "studies" / "live.artifacts").iterdir())  # the chosen trial's, the only one left
        [(number, kept)] = [(t.number, t.user_attrs["kept_weights"]) for t in
                            optuna.load_study(study_name="live", storage=f"sqlite:///{db}").trials
                            if t.user_attrs.get("kept_weights", {}).get("artifact_id") == stored.name]
        trial_id = next(t["trial_id"] for t in detail["trials"] if t["number"] == number)
        with urllib.request.urlopen(f"{base}/artifacts/{study_id}/{trial_id}/{kept['artifact_id']}",
                                    timeout=30) as response:
            assert hashlib.sha256(response.read()).hexdigest() == kept["sha256"]
        # A real browser renders the trial list.
        page = _render(f"{base}/dashboard/studies/{study_id}/trials", workdir / "chrome-profile", "--dump-dom")
        assert page.returncode == 0, page.stderr[-2000:]
        for number in range(6):
            assert f"Trial {number}" in page.stdout
        ARTIFACTS.mkdir(exist_ok=True)
        shot = _render(f"{base}/dashboard/studies/{study_id}", workdir / "chrome-profile",
                       f"--screenshot={ARTIFACTS / 'dashboard.png'}")
        assert shot.returncode == 0 and _png_size(ARTIFACTS / "dashboard.png")[0] == 1400
    finally:
        for proc in (tune, dash):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def test_dashboard_refuses_a_busy_port(reported: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["dashboard", "--study-name", "rep", "--port", str(port)])
    assert result.exit_code == 1 and f"127.0.0.1:{port}: cannot serve the dashboard there" in result.output
    assert "Traceback" not in result.output


def _run_in_pty(args: list[str], cwd: Path) -> str:
    """Run the CLI with a terminal as stdout/stderr; return what the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(cwd)
        os.execv(sys.executable, [*SCRIPTED_CLI, *args])
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_step_progress_only_on_a_terminal(workdir: Path, tiny_model: Path) -> None:
    """What the terminal shows is the claim: the scripted trainer calls the step hook as fine_tune does."""
    args = ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--epochs", "2", "--no-track",
            "--batch-sizes", "8", "--learning-rates", "1e-3,1e-4"]
    shown = _run_in_pty([*args, "--study-name", "tty"], workdir)
    assert "\r  step 12/12 [" in shown and "100%" in shown  # 46 examples / 8 = 6 steps x 2 epochs
    assert "[2/2] trial 1" in shown and "ETA" in shown
    piped = subprocess.run([*SCRIPTED_CLI, *args, "--study-name", "piped"], cwd=workdir,
                           capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "step " not in piped.stderr and "[2/2] trial 1" in piped.stderr
    quiet = subprocess.run([*SCRIPTED_CLI, *args, "--study-name", "quiet", "--quiet"],
                           cwd=workdir, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "" and "Best F1 is" in quiet.stdout
    assert "step " not in _run_in_pty([*args, "--study-name", "tty-quiet", "--quiet"], workdir)
