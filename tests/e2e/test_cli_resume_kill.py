"""kill -9 a real `tune` at several moments, rerun until done, compare with an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA, REFERENCE_JOB, SCRIPTED_CLI, states, wait_for

GRID = ["--batch-sizes", "8,16", "--learning-rates", "1e-3,3e-4,1e-4"]


def tune_cmd(model: Path, name: str, *extra: str, scripted: bool = False) -> list[str]:
    """`tune` with real training, or with the scripted trainer where the protocol is the claim."""
    return [*(SCRIPTED_CLI if scripted else [sys.executable, "-m", "optuna_seqclf"]), "tune", str(EXAMPLE_DATA),
            "--model", str(model), "--study-name", name, "--epochs", "6", "--threads", "1", "--no-track", *GRID,
            *REFERENCE_JOB, *extra]


def values_by_point(db: Path, name: str) -> dict[tuple[int, float], list[float]]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    out: dict[tuple[int, float], list[float]] = {}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        out.setdefault((t.params["batch_size"], t.params["learning_rate"]), []).append(t.value)
    return out


@pytest.mark.slow
def test_kill_minus_nine_at_several_moments_then_resume(workdir: Path, tiny_model: Path) -> None:
    ref = subprocess.run(tune_cmd(tiny_model, "ref"), cwd=workdir, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    db = workdir / "studies" / "k.db"
    n_complete = lambda: states(db).count("COMPLETE")  # noqa: E731
    moments = [
        ("during start-up (reading, tokenising)", lambda: time.sleep(1.0) or True),
        ("mid-trial", lambda: "RUNNING" in states(db)),
        ("between trials", lambda: n_complete() >= 2),
        ("right after a result is written", lambda: n_complete() >= 4),
    ]
    kills = 0
    for label, moment in moments:
        proc = subprocess.Popen(tune_cmd(tiny_model, "k"), cwd=workdir, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: moment() or proc.poll() is not None)  # noqa: B023
            if label == "mid-trial":
                time.sleep(0.4)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        finally:
            proc.wait(timeout=60)
    assert kills >= 3
    final = subprocess.run(tune_cmd(tiny_model, "k"), cwd=workdir, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    got = values_by_point(db, "k")
    want = values_by_point(workdir / "studies" / "ref.db", "ref")
    assert set(got) == set(want) and len(want) == 6
    assert all(len(v) == 1 for v in got.values()), got  # one COMPLETE trial per point, no duplicates
    assert got == want  # deterministic: same dev F1 whether interrupted or not
    # No trial is left RUNNING, and a further run trains nothing.
    assert "RUNNING" not in states(db)
    again = subprocess.run(tune_cmd(tiny_model, "k"), cwd=workdir, capture_output=True, text=True, timeout=300)
    assert "nothing to train" in again.stderr


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resumes(workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_STEP_S", "0.02")  # a trial of 36 steps: 0.7 s
    db = workdir / "studies" / "c.db"
    proc = subprocess.Popen(tune_cmd(tiny_model, "c", scripted=True), cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: states(db).count("COMPLETE") >= 1 and "RUNNING" in states(db))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Interrupted" in err and "run the same command again" in err
    assert "Traceback" not in err
    assert "RUNNING" not in states(db)  # the interrupted trial is closed, not left dangling
    final = subprocess.run(tune_cmd(tiny_model, "c", scripted=True), cwd=workdir, capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr
    got = values_by_point(db, "c")
    assert len(got) == 6 and all(len(v) == 1 for v in got.values())


def _train_cmd(name: str, *extra: str) -> list[str]:
    """`train` with the scripted trainer (each replica's model is the untrained one, saved and scored for real):
    the claim is what a killed or interrupted run leaves in the output folder."""
    return [*SCRIPTED_CLI, "train", "--study-name", name, "--output-dir", "out", "--threads", "1", "--no-track",
            *extra]


def _replica_dirs(out: Path) -> list[Path]:
    return sorted(out.glob("bert-custom-model_*")) if out.exists() else []


@pytest.mark.slow
def test_killed_and_interrupted_replica_runs_resume(workdir: Path, tiny_model: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_STEP_S", "0.02")  # a replica of 36 steps: 0.7 s, then saved
    tuned = subprocess.run([*tune_cmd(tiny_model, "r", scripted=True), "--learning-rates", "1e-3",
                            "--batch-sizes", "8"],
                           cwd=workdir, capture_output=True, text=True, timeout=300)
    assert tuned.returncode == 0, tuned.stderr
    out = workdir / "out"
    # kill -9 while the third replica trains: two complete folders, a temporary one left behind.
    proc = subprocess.Popen(_train_cmd("r"), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    wait_for(lambda: (len(_replica_dirs(out)) >= 2 and any(out.glob(".*.tmp-*"))) or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done = _replica_dirs(out)
    assert 2 <= len(done) < 5
    assert all((d / "all_results.json").is_file() for d in done)  # a folder that exists is complete
    # Ctrl-C during the next run: exit 130, the replica being trained leaves nothing behind.
    proc = subprocess.Popen(_train_cmd("r"), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for(lambda: any(out.glob(f".*.tmp-{proc.pid}")) or proc.poll() is not None)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Interrupted" in err and "Traceback" not in err
    assert not list(out.glob(".*.tmp-*"))  # the killed run's temp folder and the interrupted one are gone
    final = subprocess.run(_train_cmd("r"), cwd=workdir, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert final.stderr.count("exists, reused") >= len(done)
    assert len(_replica_dirs(out)) == 5
    assert all((d / "all_results.json").is_file() for d in _replica_dirs(out))
