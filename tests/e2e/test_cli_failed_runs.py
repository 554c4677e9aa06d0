"""Failed replicas: marked, left out of the mean and the ensemble (both means printed), replaced on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from optuna_seqclf.cli.commands import cli
from optuna_seqclf.predict.predictor import Predictor
from optuna_seqclf.training.loop import EvalResult
from optuna_seqclf.training.prepared import Prepared


def test_a_failed_replica_is_replaced_and_left_out(workdir: Path, learnable: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data, model = learnable
    runner = CliRunner()
    tuned = runner.invoke(cli, ["tune", str(data), "--model", str(model), "--study-name", "fr", "--no-track",
                                "--batch-sizes", "16", "--learning-rates", "1e-2", "--epochs", "8"])
    assert tuned.exit_code == 0, tuned.output
    real, calls = Prepared.failed_run, []

    def first_fails(self: Prepared, dev: EvalResult) -> str | None:
        calls.append(dev.metrics["f1"])  # the first replica (seed 1) is judged a failed run; the rest as they are
        return "simulated failure" if len(calls) == 1 else real(self, dev)

    monkeypatch.setattr(Prepared, "failed_run", first_fails)
    trained = runner.invoke(cli, ["train", "--study-name", "fr", "-o", "out", "--seeds", "1,2", "--no-track",
                                  "--replace-failed"])
    assert trained.exit_code == 0, trained.output
    assert "seed 1: FAILED RUN, simulated failure; training the next unused seed instead" in trained.output
    assert "1 (failed run)" in trained.output
    assert "mean ± std, without failed" in trained.output and "mean ± std, all seeds" in trained.output
    summary = json.loads((workdir / "out" / "replicas_summary.json").read_text())
    assert summary["seeds"] == [1, 2, 3] and summary["failed_runs"] == [1]
    assert summary["ensemble"]["seeds"] == [2, 3]
    rows = {r["seed"]: r for r in summary["replicas"]}
    assert summary["mean"]["test_f1"] == pytest.approx((rows[2]["test_f1"] + rows[3]["test_f1"]) / 2)
    assert summary["all_seeds"]["mean"]["test_f1"] == pytest.approx(sum(r["test_f1"] for r in rows.values()) / 3)
    folders = sorted(p.name for p in (workdir / "out").iterdir() if p.is_dir())
    assert [name.rsplit("_", 1)[1] for name in folders] == ["1", "2", "3"]  # the failed replica is kept on disk
    failed = json.loads((workdir / "out" / folders[0] / "all_results.json").read_text())
    assert failed["failed_run"] == "simulated failure"
    assert Predictor.from_pretrained(workdir / "out").seeds == (2, 3)  # predict's ensemble is train's
    # a rerun reuses all three and agrees
    monkeypatch.setattr(Prepared, "failed_run", real)
    again = runner.invoke(cli, ["train", "--study-name", "fr", "-o", "out", "--seeds", "1,2", "--no-track",
                                "--replace-failed"])
    assert again.exit_code == 0, again.output
    assert json.loads((workdir / "out" / "replicas_summary.json").read_text())["failed_runs"] == [1]
