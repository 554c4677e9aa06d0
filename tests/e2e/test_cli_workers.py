"""Concurrent workers share one grid: every point trained exactly once, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA, REFERENCE_JOB, SCRIPTED_CLI, free_port
from optuna_seqclf import study_result

GRID = ["--batch-sizes", "8,16", "--learning-rates", "1e-3,3e-4,1e-4,3e-5"]


def _tune_cmd(model: Path, name: str, storage: str, workers: int, *extra: str, scripted: bool = False) -> list[str]:
    return [*(SCRIPTED_CLI if scripted else [sys.executable, "-m", "optuna_seqclf"]), "tune", str(EXAMPLE_DATA),
            "--model", str(model), "--study-name", name, "--storage", storage, "--epochs", "1",
            "--workers", str(workers), *GRID, *REFERENCE_JOB, *(extra or ("--no-track",))]


def _tune(model: Path, name: str, storage: str, workers: int, *extra: str, scripted: bool = False,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(_tune_cmd(model, name, storage, workers, *extra, scripted=scripted),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _values(storage: str, name: str) -> dict[tuple[int, float], float]:
    study = optuna.load_study(study_name=name, storage=storage)
    return {(t.params["batch_size"], t.params["learning_rate"]): t.value
            for t in study.get_trials(states=(TrialState.COMPLETE,))}


def _check_grid(storage: str, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    complete = Counter((t.params["batch_size"], t.params["learning_rate"])
                       for t in trials if t.state == TrialState.COMPLETE)
    assert len(complete) == 8, complete
    assert set(complete.values()) == {1}, f"a point was trained twice: {complete}"
    assert not [t for t in trials if t.state == TrialState.FAIL], "a worker failed (lock error?)"
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_four_workers_on_sqlite(workdir: Path, tiny_model: Path) -> None:
    storage = f"sqlite:///{workdir / 'shared.db'}"
    # Aim on, into a new folder: the 4 workers create its repo at the same moment (that once failed a trial).
    proc = _tune(tiny_model, "w", storage, 4, "--log-dir", str(workdir / "aimlogs"))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "database is locked" not in err and "Traceback" not in err and "out of date" not in err
    _check_grid(storage, "w")
    assert err.count("[worker ") >= 8  # each worker says which point it finished
    assert "Best Configuration is" in out
    # the 4 workers uploaded and swept the same store: only the chosen trial's weights are left
    chosen = study_result("w", storage).best  # our choice: ties (common with the tiny BERT) go by dev loss, ...
    assert chosen is not None
    study = optuna.load_study(study_name="w", storage=storage)
    assert [p.name for p in (workdir / "w.artifacts").iterdir()] == \
        [study.trials[chosen.number].user_attrs["kept_weights"]["artifact_id"]]
    # Determinism: the same dev F1 per point as one process alone (workers here get 1 thread each).
    alone = f"sqlite:///{workdir / 'alone.db'}"
    single = subprocess.run([*_tune_cmd(tiny_model, "alone", alone, workers=1), "--threads", "1"],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    assert _values(storage, "w") == _values(alone, "alone")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_machines_two_workers_each_on_postgres(workdir: Path, tiny_model: Path, postgres_url: str) -> None:
    # Two separate `tune` commands (as on two machines), two worker processes each: 4 workers.
    # The scripted trainer: the claim is the claims on PostgreSQL (test_four_workers_on_sqlite trains for real)
    # Their trials keep weights in one shared folder (the scripted trials load the untrained model to do so).
    shared = workdir / "shared-store"
    procs = [_tune(tiny_model, "pg", postgres_url, 2, "--no-track", "--quiet", "--artifact-store", str(shared),
                   scripted=True, env={"SCRIPTED_KEEP": "1"}) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "[worker" not in err  # --quiet silences the workers too
    _check_grid(postgres_url, "pg")
    best = optuna.load_study(study_name="pg", storage=postgres_url).best_trial
    assert [p.name for p in shared.iterdir()] == [best.user_attrs["kept_weights"]["artifact_id"]]
    # `train` on "another machine": the store is not where the study recorded it, unless it is given
    moved = workdir / "mounted-elsewhere"
    shared.rename(moved)
    train = [*SCRIPTED_CLI, "train", "--study-name", "pg", "--storage", postgres_url, "--no-track", "--seeds", "1,2"]
    away = subprocess.run([*train, "-o", str(workdir / "a")], capture_output=True, text=True, timeout=300)
    assert away.returncode == 0, away.stderr
    assert f"its artifact store {shared} is not on this machine (give --artifact-store): training them" in away.stderr
    assert "Replicas: seed(s) 1,2 trained" in away.stderr  # progress lines go to stderr
    given = subprocess.run([*train, "-o", str(workdir / "b"), "--artifact-store", str(moved)], capture_output=True,
                           text=True, timeout=300)
    assert given.returncode == 0, given.stderr
    assert f"Replicas: seed(s) 1 from the study's trial(s) {best.number}; seed(s) 2 trained" in given.stderr


@pytest.mark.postgres
def test_unreachable_postgres_fails_fast(workdir: Path, tiny_model: Path) -> None:
    from click.testing import CliRunner

    from optuna_seqclf.cli.commands import cli

    result = CliRunner().invoke(cli, ["train", "--study-name", "x", "--output-dir", "out", "--storage",
                                      f"postgresql+psycopg://postgres:pw@127.0.0.1:{free_port()}/none"])
    assert result.exit_code == 1
    assert "cannot open the storage" in result.output and "pw" not in result.output
