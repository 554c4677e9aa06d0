"""The confirmation stage end to end: each (point, seed) trained once with workers, after kill -9, on
PostgreSQL; `train`, `studies` and `report` agree with `tune` on the choice; --confirm-top 0 is the old rule."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from conftest import SCRIPTED_CLI, states, wait_for
from optuna_seqclf.cli.commands import cli
from optuna_seqclf.study.schema import CONFIRM_SEED_ATTR, SELECTION_ATTR
from optuna_seqclf.study.selection import best_grid_trial

GRID = ["--batch-sizes", "8,16", "--learning-rates", "3e-3,1e-2", "--epochs", "2"]


@pytest.fixture(autouse=True)
def _quick_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_STEP_S", "0.01")  # a trial of 40 steps lasts 0.4 s: long enough to kill


def _cmd(learnable: tuple[Path, Path], name: str, *extra: str) -> list[str]:
    """`tune` with the scripted trainer: the stage's protocol is the claim (test_cli_learning and
    test_confirm_top_zero train for real)."""
    data, model = learnable
    return [*SCRIPTED_CLI, "tune", str(data), "--model", str(model), "--study-name", name,
            "--no-track", "--pruner", "none", "--confirm-top", "2", "--confirm-seeds", "2", *GRID, *extra]


def _runs(storage: str, name: str) -> Counter[tuple[int, float, int | None]]:
    """COMPLETE trials per (batch size, learning rate, confirmation seed or None for the grid)."""
    study = optuna.load_study(study_name=name, storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    return Counter((t.params["batch_size"], t.params["learning_rate"], t.user_attrs.get(CONFIRM_SEED_ATTR))
                   for t in study.get_trials(states=(TrialState.COMPLETE,)))


def _check_once(storage: str, name: str) -> optuna.Study:
    runs = _runs(storage, name)
    assert set(runs.values()) == {1}, f"a (point, seed) was trained twice: {runs}"
    grid = {(b, lr) for b, lr, seed in runs if seed is None}
    confirmed = {(b, lr) for b, lr, seed in runs if seed is not None}
    assert len(grid) == 4 and len(confirmed) == 2 and len(runs) == 8
    assert {seed for *_, seed in runs if seed is not None} == {2, 3}  # the study's seed 1, then + 1, + 2
    study = optuna.load_study(study_name=name, storage=storage)
    top = sorted(best_grid_trial_results(study), key=lambda t: t.rank_key())[:2]
    assert confirmed == {(t.point.batch_size, t.point.learning_rate) for t in top}
    return study


def best_grid_trial_results(study: optuna.Study) -> list:  # type: ignore[type-arg]
    from optuna_seqclf.study.queue import TrialResult, grid_trials

    return [TrialResult.of(t) for t in grid_trials(study, states=(TrialState.COMPLETE,))]


@pytest.mark.slow
def test_two_workers_confirm_once_and_every_command_agrees(workdir: Path, learnable: tuple[Path, Path]) -> None:
    storage = "sqlite:///studies/cf.db"
    proc = subprocess.run(_cmd(learnable, "cf", "--workers", "2"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "[confirm] trial" in proc.stderr
    study = _check_once(storage, "cf")
    chosen = study.user_attrs[SELECTION_ATTR]
    assert chosen["rule"] == "confirmed" and len(chosen["confirmed"]) == 2
    point = chosen["point"]
    assert f"Best Configuration is {point['batch_size']} {point['learning_rate']!r}" in proc.stdout
    assert "Confirmed over seeds 1,2,3: mean dev F1" in proc.stdout
    assert len(re.findall(r"3 seeds: [0-9.]+ ± [0-9.]+", proc.stdout)) == 2
    trials = len(study.get_trials())
    again = subprocess.run(_cmd(learnable, "cf"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "complete and confirmed; nothing to train" in again.stderr
    assert len(study.get_trials()) == trials  # a finished stage trains nothing
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--study-name", "cf", "-o", "out", "--seeds", "1", "--no-track"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads((workdir / "out" / "replicas_summary.json").read_text())
    assert summary["params"] == point and summary["selection"]["rule"] == "confirmed"
    listed = runner.invoke(cli, ["studies"])
    chosen_cell = f"{point['batch_size']} {point['learning_rate']:g}"
    assert re.search(rf"\|\s+cf \|.*\(3 seeds\) \|\s+{chosen_cell} \|", listed.output)
    reported = runner.invoke(cli, ["report", "--study-name", "cf"])
    assert reported.exit_code == 0, reported.output
    text = (workdir / "reports" / "cf" / "report.md").read_text()
    assert "## Confirmation over seeds" in text and "](confirmation.png)" in text
    assert (workdir / "reports" / "cf" / "confirmation.png").stat().st_size > 10_000


@pytest.mark.slow
def test_kill_minus_nine_in_the_stage_then_resume(workdir: Path, learnable: tuple[Path, Path]) -> None:
    db = workdir / "studies" / "ck.db"
    for wanted in (5, 6):  # kill while the confirmation stage runs (4 grid trials, then its 4 runs)
        proc = subprocess.Popen(_cmd(learnable, "ck", "--threads", "1"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

        def in_stage(wanted: int = wanted, proc: subprocess.Popen[bytes] = proc) -> bool:
            return (states(db).count("COMPLETE") >= wanted and "RUNNING" in states(db)) or proc.poll() is not None

        try:
            wait_for(in_stage, timeout=300)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    final = subprocess.run(_cmd(learnable, "ck"), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert "Recovered" in final.stderr  # the killed run's trial was failed and its (point, seed) retried
    _check_once("sqlite:///studies/ck.db", "ck")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_machines_confirm_once_on_postgres(workdir: Path, learnable: tuple[Path, Path], postgres_url: str) -> None:
    procs = [subprocess.Popen(_cmd(learnable, "cpg", "--storage", postgres_url, "--quiet"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    _check_once(postgres_url, "cpg")


def test_confirm_top_zero_is_the_single_seed_choice(workdir: Path, learnable: tuple[Path, Path]) -> None:
    data, model = learnable
    result = CliRunner().invoke(cli, ["tune", str(data), "--model", str(model), "--study-name", "c0", "--no-track",
                                      "--confirm-top", "0", "--batch-sizes", "8,16", "--learning-rates", "1e-2",
                                      "--epochs", "8"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="c0", storage="sqlite:///studies/c0.db")
    assert len(study.get_trials()) == 2 and all(CONFIRM_SEED_ATTR not in t.user_attrs for t in study.get_trials())
    best = best_grid_trial(study)
    assert best is not None and study.user_attrs[SELECTION_ATTR]["rule"] == "single-seed"
    assert f"Best Configuration is {best.point.batch_size} {best.point.learning_rate!r}" in result.stdout
    assert "Confirmed" not in result.output and "failed run" not in result.output


def test_run_with_the_defaults_prunes_confirms_and_reuses_what_it_trained(
        workdir: Path, learnable: tuple[Path, Path]) -> None:
    """The default job (issue 24) trained for real: the median pruner, the top 3 points confirmed with one more
    seed, and replicas 1 and 2 made from the chosen point's grid and confirmation trials' kept weights."""
    data, model = learnable
    result = CliRunner().invoke(cli, ["run", str(data), "--model", str(model), "--study-name", "dj", "--no-track",
                                      "--batch-sizes", "8,16", "--learning-rates", "1e-2,3e-3,1e-4",
                                      "--epochs", "4", "-o", "out"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="dj", storage="sqlite:///studies/dj.db")
    chosen = study.user_attrs[SELECTION_ATTR]
    assert chosen["rule"] == "confirmed", chosen
    confirmation = [t for t in study.get_trials() if CONFIRM_SEED_ATTR in t.user_attrs]
    assert {t.user_attrs[CONFIRM_SEED_ATTR] for t in confirmation} == {2} and 2 <= len(confirmation) <= 3
    assert "Confirmed over seeds 1,2: mean dev F1" in result.stdout
    point = chosen["point"]
    assert f"Best Configuration is {point['batch_size']} {point['learning_rate']!r}" in result.stdout
    assert re.search(r"Replicas: seed\(s\) 1,2 from the study's trial\(s\) \d+,\d+; seed\(s\) 3,4,5 trained",
                     result.output), result.output
    summary = json.loads((workdir / "out" / "replicas_summary.json").read_text())
    assert summary["params"] == point and len(summary["replicas"]) == 5
