"""Pruning: pruned points are recorded as PRUNED, stop early, are shown as such and never retrained."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA
from optuna_seqclf.cli.commands import cli
from optuna_seqclf.study.record import make_pruner


class _PruneLearningRate(optuna.pruners.BasePruner):
    """Prunes every trial with learning rate 1e-4 at its first report: a pruner whose decisions we know."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.params.get("learning_rate") == 1e-4


def test_pruned_points_stop_early_and_are_not_retrained(workdir: Path, tiny_model: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("optuna_seqclf.study.record.make_pruner", lambda *args: _PruneLearningRate())
    args = ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--study-name", "p", "--epochs", "3",
            "--no-track", "--batch-sizes", "8,16", "--learning-rates", "1e-3,1e-4", "--pruner", "median"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="p", storage="sqlite:///studies/p.db")
    by_point = {(t.params["batch_size"], t.params["learning_rate"]): t for t in study.get_trials()}
    assert len(by_point) == 4 and len(study.trials) == 4
    for (_, lr), trial in by_point.items():
        if lr == 1e-4:
            assert trial.state == TrialState.PRUNED
            assert sorted(trial.intermediate_values) == [1]  # stopped after the first of 3 epochs
            assert trial.user_attrs["pruned_after_epoch"] == 1
        else:
            assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2, 3]
    assert result.output.count("pruned after epoch 1 (dev") == 2  # the progress lines
    # the grid table shows when each pruned point stopped and its last dev score
    table = result.stdout.split("Model is")[0]
    assert table.count(" (pruned after epoch 1) |") == 2
    for (bs, lr), trial in by_point.items():
        if lr == 1e-4:
            assert f"| {trial.value:.6f} (pruned after epoch 1) | {bs:>9} |" in table
    assert "Chosen by the grid's single seed" in result.stdout
    assert "Not complete" not in result.output  # pruned is finished, not failed
    assert "Best Configuration is" in result.stdout and " 0.001" in result.stdout.split("Best Configuration is")[1]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "nothing to train" in again.output
    assert len(optuna.load_study(study_name="p", storage="sqlite:///studies/p.db").trials) == 4
    report = CliRunner().invoke(cli, ["report", "--study-name", "p"])
    assert report.exit_code == 0, report.output
    assert "4 points, 2 complete, 0 failed, 2 pruned" in (workdir / "reports" / "p" / "report.md").read_text()


def test_pruners_are_optuna_pruners_on_epochs() -> None:
    assert isinstance(make_pruner("none", 4, 36), optuna.pruners.NopPruner)
    median = make_pruner("median", 4, 36)
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_startup_trials == 4
    assert make_pruner("median", 4, 12)._n_startup_trials == 2  # a small grid is not spent on start-up trials
    assert make_pruner("median", 4, 100)._n_startup_trials == 5
    halving = make_pruner("halving", 4, 36)
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner)
    hyperband = make_pruner("hyperband", 4, 36)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 4 and hyperband._min_resource == 1


def test_unknown_pruner_is_a_usage_error(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", "x", "--pruner", "sometimes"])
    assert result.exit_code == 2 and "sometimes" in result.output


def test_halving_stops_points_outside_the_top_third_after_their_first_epoch() -> None:
    """Our rung layout on epochs: the first rung is epoch 1, the next epoch 3."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner("halving", 4, 12))
    curves = [0.80, 0.50, 0.60, 0.90, 0.40, 0.85]  # dev F1 after epoch 1; later epochs add 0.01 each
    stopped_after = []
    for first in curves:
        trial = study.ask()
        for epoch in range(1, 5):
            trial.report(first + 0.01 * (epoch - 1), epoch)
            if trial.should_prune():
                stopped_after.append(epoch)
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            stopped_after.append(None)
            study.tell(trial, first + 0.03)
    # best so far at its first rung (1st, 4th), or in the top third of 6 (6th: 0.85 is 2nd of 6): go on
    assert stopped_after[1] == stopped_after[2] == stopped_after[4] == 1
    assert stopped_after[0] is None and stopped_after[3] is None
    assert stopped_after[5] in (None, 3)
