"""Aim: every trial and replica is a run readable from a fresh process through Aim's SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE_DATA
from optuna_seqclf.cli import cli

READ_BACK = """
import json, sys
from aim import Repo
repo = Repo(sys.argv[1])
out = []
for run in repo.iter_runs():
    metrics = {}
    for m in run.metrics():
        metrics[m.name + "/" + m.context.to_dict().get("subset", "")] = len(m.values.values_list())
    out.append({"name": run.name, "experiment": run.experiment, "hparams": run["hparams"], "metrics": metrics})
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
    assert set(runs) == {"tracked/trial-0", "tracked/trial-1", "tracked/replica-seed1", "tracked/replica-seed2"}
    assert {r["experiment"] for r in runs.values()} == {"tracked"}
    trial = runs["tracked/trial-0"]
    assert trial["hparams"]["batch_size"] == 8 and trial["hparams"]["trial"] == 0
    assert trial["hparams"]["learning_rate"] in (1e-3, 1e-4) and trial["hparams"]["epochs"] == 2.0
    assert trial["metrics"]["f1/eval"] == 2  # one dev evaluation per epoch
    assert trial["metrics"]["loss/train"] >= 1
    replica = runs["tracked/replica-seed2"]
    assert replica["hparams"]["seed"] == 2
    assert replica["metrics"]["f1/test"] == 1 and replica["metrics"]["f1/eval"] >= 1


def test_no_track_writes_no_aim_repo(workdir: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--batch-sizes", "8",
                                      "--learning-rates", "1e-3", "--epochs", "1", "--no-track"])
    assert result.exit_code == 0, result.output
    assert not (workdir / "logs").exists()


def test_without_aim_tracking_is_skipped_with_one_warning(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_seqclf.tracking import NullTracker, make_tracker

    monkeypatch.setitem(sys.modules, "aim", None)  # as on Python 3.13, where aim has no wheel: import fails
    with pytest.warns(UserWarning, match="aim is not installed") as caught:
        tracker = make_tracker(workdir / "logs", "exp")
    assert isinstance(tracker, NullTracker) and len(caught) == 1
    run = tracker.start("x", {"a": 1})
    run.track("f1", 0.5, step=1, subset="eval")
    run.close()
    assert not (workdir / "logs").exists()
