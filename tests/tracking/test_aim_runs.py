"""Aim: every trial and replica is a run readable from a fresh process through Aim's SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA
from optuna_seqclf.cli.commands import cli

READ_BACK = """
import json, sys
from aim import Repo
repo = Repo(sys.argv[1])
out = []
for run in repo.iter_runs():
    metrics = {}
    for m in run.metrics():
        metrics[m.name + "/" + m.context.to_dict().get("subset", "")] = len(m.values.values_list())
    try:
        failed = run["failed_run"]
    except KeyError:
        failed = None
    out.append({"name": run.name, "experiment": run.experiment, "hparams": run["hparams"], "metrics": metrics,
                "failed_run": failed})
print(json.dumps(out))
"""


def test_trials_and_replicas_are_aim_runs(workdir: Path, tiny_model: Path) -> None:
    pytest.importorskip("aim")
    args = ["run", str(EXAMPLE_DATA), "--model", str(tiny_model), "--study-name", "tracked", "--batch-sizes", "8",
            "--learning-rates", "1e-3,1e-4", "--epochs", "2", "--seeds", "1,2", "--output-dir", "out",
            "--log-dir", "aimlogs"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    proc = subprocess.run([sys.executable, "-c", READ_BACK, str(workdir / "aimlogs")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(runs) == {"tracked/trial-0", "tracked/trial-1", "tracked/replica-seed1", "tracked/replica-seed2",
                         "tracked/ensemble"}
    assert {r["experiment"] for r in runs.values()} == {"tracked"}
    trial = runs["tracked/trial-0"]
    assert trial["hparams"]["batch_size"] == 8 and trial["hparams"]["trial"] == 0
    assert trial["hparams"]["learning_rate"] in (1e-3, 1e-4) and trial["hparams"]["epochs"] == 2.0
    assert trial["metrics"]["f1/eval"] == 2  # one dev evaluation per epoch
    assert trial["metrics"]["loss/train"] >= 1
    assert trial["hparams"]["stage"] == "grid"
    # the tiny model learns nothing: its trials and replicas are failed runs, and Aim says so
    assert "majority class" in trial["failed_run"] or "one class" in trial["failed_run"]
    replica = runs["tracked/replica-seed2"]
    assert replica["hparams"]["seed"] == 2 and replica["failed_run"]
    assert replica["metrics"]["f1/test"] == 1 and replica["metrics"]["f1/eval"] >= 1
    ensemble = runs["tracked/ensemble"]  # the seeds' ensemble, scored once on dev and once on test
    assert ensemble["hparams"]["seeds"] == [1, 2] and ensemble["metrics"]["f1/test"] == 1
    assert ensemble["metrics"]["accuracy/eval"] == 1


def test_no_track_writes_no_aim_repo(workdir: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--batch-sizes", "8",
                                      "--learning-rates", "1e-3", "--epochs", "1", "--no-track"])
    assert result.exit_code == 0, result.output
    assert not (workdir / "logs").exists()


def test_without_aim_tracking_is_skipped_with_one_warning(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_seqclf.tracking import NullTracker, Tracking, make_tracker

    monkeypatch.setitem(sys.modules, "aim", None)  # as on Python 3.13, where aim has no wheel: import fails
    with pytest.warns(UserWarning, match="aim is not installed") as caught:
        tracker = make_tracker(Tracking(aim=workdir / "logs"), "exp")
    assert isinstance(tracker, NullTracker) and len(caught) == 1
    run = tracker.start("x", {"a": 1})
    run.track("f1", 0.5, step=1, subset="eval")
    run.close()
    assert not (workdir / "logs").exists()


RACE = """
import sys, time
from pathlib import Path
from optuna_seqclf.tracking import Tracking, make_tracker
start_at = float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
run = make_tracker(Tracking(aim=Path(sys.argv[1])), "race").start(f"race/{sys.argv[3]}", {"i": sys.argv[3]})
run.track("f1", 0.5, step=1, subset="eval")
run.close()
"""


@pytest.mark.slow
def test_workers_starting_together_share_one_new_aim_repo(tmp_path: Path) -> None:
    """Worker processes that open a fresh log folder at the same moment all get their run saved."""
    pytest.importorskip("aim")
    import time

    for attempt in range(3):
        logs = tmp_path / f"logs{attempt}"
        start_at = time.time() + 4.0  # after every interpreter has imported aim
        procs = [subprocess.Popen([sys.executable, "-c", RACE, str(logs), str(start_at), str(i)],
                                  stderr=subprocess.PIPE, text=True) for i in range(4)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        read = subprocess.run([sys.executable, "-c", READ_BACK, str(logs)], capture_output=True, text=True,
                              timeout=120)
        assert read.returncode == 0, read.stderr
        assert sorted(r["name"] for r in json.loads(read.stdout)) == [f"race/{i}" for i in range(4)]


def test_a_run_never_tracked_is_still_saved(tmp_path: Path) -> None:
    """Runs are created at their first use; one closed before any metric (a trial that failed early) exists."""
    pytest.importorskip("aim")
    from optuna_seqclf.tracking import Tracking, make_tracker

    tracker = make_tracker(Tracking(aim=tmp_path / "new" / "logs"), "exp")
    tracker.start("exp/early-failure", {"batch_size": 8}).close()
    run = tracker.start("exp/trained", {"batch_size": 16})
    run.track("f1", 0.5, step=1, subset="eval")
    run.close()
    proc = subprocess.run([sys.executable, "-c", READ_BACK, str(tmp_path / "new" / "logs")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(runs) == {"exp/early-failure", "exp/trained"}
    assert runs["exp/early-failure"]["hparams"] == {"batch_size": 8} and runs["exp/early-failure"]["metrics"] == {}
    assert runs["exp/trained"]["metrics"] == {"f1/eval": 1}


def test_a_failed_repo_setup_is_one_tracking_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The set-up runs in the background; its failure surfaces where the run is first needed, once."""
    pytest.importorskip("aim")
    from optuna_seqclf.errors import TrackingError
    from optuna_seqclf.tracking import Tracking, aim_runs, make_tracker

    def no_space(log_dir: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(aim_runs, "_ensure_repo", no_space)
    run = make_tracker(Tracking(aim=tmp_path / "logs"), "exp").start("exp/trial-0", {})
    with pytest.raises(TrackingError, match=r"logs: Aim run exp/trial-0 could not be created \(OSError: .*No space"):
        run.track("loss", 1.0, step=1, subset="train")
    run.close()  # the error was already raised where it happened: closing adds none


@pytest.mark.parametrize("command", ["tune", "run"])
def test_a_log_dir_inside_a_file_is_refused_before_anything_is_written(workdir: Path, tiny_model: Path,
                                                                       command: str) -> None:
    (workdir / "notes.txt").write_text("not a folder")
    args = [command, str(EXAMPLE_DATA), "--model", str(tiny_model), "--batch-sizes", "8", "--learning-rates", "1e-3",
            "--epochs", "1", "--log-dir", "notes.txt/aim"] + (["--output-dir", "out"] if command == "run" else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "--log-dir notes.txt/aim: notes.txt is a file, not a folder" in result.output
    assert sorted(p.name for p in workdir.iterdir()) == ["notes.txt"]
