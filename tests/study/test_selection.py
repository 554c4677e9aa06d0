"""selection and confirm: which point is best, failed runs, and the confirmation stage's plan and rule."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from optuna_seqclf.report.tables import grid_table, selection_notes
from optuna_seqclf.settings import HParams
from optuna_seqclf.study.confirm import ConfirmPlan, candidates, next_confirmation
from optuna_seqclf.study.queue import point_status
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.schema import CONFIRM_SEED_ATTR, FAILED_RUN_ATTR, POINT_ATTR, RECORD_ATTR
from optuna_seqclf.study.selection import best_grid_trial, select
from optuna_seqclf.study.steps import Done, TrainPoint

SIZES, RATES = (8, 16, 32), (1e-5, 1e-4, 1e-3)


def _study(top: int = 0, more: int = 0) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(RECORD_ATTR, StudyRecord.from_json({
        "data_dir": "d", "text_column": "sentence", "label_column": "Label", "text_pair_column": None,
        "model": "m", "tokenizer": None, "epochs": 1.0, "max_steps": None, "max_seq_length": 128, "seed": 1,
        "batch_sizes": list(SIZES), "learning_rates": list(RATES), "config_name": "c", "task_name": "t",
        "data_fingerprint": "f", "confirm_top": top, "confirm_seeds": more}).to_json())
    return study


def _add(study: optuna.Study, value: float | None, bs: int, lr: float, *, loss: float = 0.5, seed: int | None = None,
         failed: str | None = None, state: TrialState = TrialState.COMPLETE) -> None:
    attrs: dict[str, Any] = {"dev_loss": loss, POINT_ATTR: {"batch_size": bs, "learning_rate": lr}}
    if seed is not None:
        attrs[CONFIRM_SEED_ATTR] = seed
    if failed:
        attrs[FAILED_RUN_ATTR] = failed
    study.add_trial(create_trial(
        value=value if state == TrialState.COMPLETE else None, state=state,
        params={"batch_size": bs, "learning_rate": lr},
        distributions={"batch_size": CategoricalDistribution(SIZES), "learning_rate": CategoricalDistribution(RATES)},
        user_attrs=attrs))


def test_ties_broken_by_loss_then_batch_size_then_learning_rate() -> None:
    study = _study()
    for value, bs, lr, loss in ((0.5, 32, 1e-3, 0.4), (0.9, 16, 1e-4, 0.5), (0.9, 8, 1e-3, 0.3),
                                (0.9, 32, 1e-5, 0.3), (0.9, 8, 1e-4, 0.3)):
        _add(study, value, bs, lr, loss=loss)
    best = best_grid_trial(study)
    assert best is not None and best.point == HParams(8, 1e-4)
    unique = _study()
    _add(unique, 0.5, 32, 1e-3, loss=0.4)
    _add(unique, 0.7, 16, 1e-4, loss=0.9)
    assert best_grid_trial(unique).point == HParams.from_params(unique.best_params)  # type: ignore[union-attr]


def test_a_failed_run_is_never_chosen_while_another_point_exists() -> None:
    study = _study()
    _add(study, 0.9, 8, 1e-3, failed="predicts one class")
    _add(study, 0.6, 16, 1e-3)
    selection = select(study)
    assert selection.point == HParams(16, 1e-3) and not selection.all_failed
    table = grid_table(point_status(study, StudyRecord.from_study(study).space), selection)
    assert "failed run" in table and "chosen" not in table  # "chosen" is noted for a confirmed choice only
    notes = selection_notes(selection, point_status(study, StudyRecord.from_study(study).space))
    assert any("1 grid point(s) are failed runs" in n for n in notes)


def test_when_every_point_failed_the_best_failed_one_is_shown_and_said() -> None:
    study = _study()
    _add(study, 0.33, 8, 1e-3, failed="predicts one class")
    _add(study, 0.40, 16, 1e-3, failed="no better than the majority class")
    selection = select(study)
    assert selection.all_failed and selection.point == HParams(16, 1e-3)
    notes = selection_notes(selection, point_status(study, StudyRecord.from_study(study).space))
    assert "Every complete grid point is a failed run" in notes[0] and "more epochs" in notes[0]


def _grid(study: optuna.Study, values: dict[tuple[int, float], float]) -> None:
    for bs in SIZES:
        for lr in RATES:
            _add(study, values.get((bs, lr), 0.5), bs, lr)


def test_confirmation_chooses_the_best_mean_over_seeds() -> None:
    study = _study(top=3, more=2)
    _grid(study, {(8, 1e-4): 0.90, (16, 1e-4): 0.89, (32, 1e-4): 0.88, (8, 1e-3): 0.80})
    space = StudyRecord.from_study(study).space
    plan = StudyRecord.from_study(study).confirm_plan()
    assert plan == ConfirmPlan(3, (2, 3))
    order = [c.point for c in candidates(point_status(study, space), plan)]
    assert order == [HParams(8, 1e-4), HParams(16, 1e-4), HParams(32, 1e-4)]
    # (8, 1e-4) was lucky with the grid's seed; (16, 1e-4) is better on average
    for seed, values in ((2, (0.80, 0.88, 0.86)), (3, (0.82, 0.89, 0.85))):
        assert isinstance(next_confirmation(study, point_status(study, space), plan, 2), TrainPoint)
        for point, value in zip(order, values):
            _add(study, value, point.batch_size, point.learning_rate, seed=seed)
    assert next_confirmation(study, point_status(study, space), plan, 2) == Done()  # the stage is done
    selection = select(study)
    assert selection.rule == "confirmed" and selection.point == HParams(16, 1e-4) and selection.differs
    assert selection.single_seed_best is not None and selection.single_seed_best.point == HParams(8, 1e-4)
    assert next(c.values for c in selection.confirmed) == (0.89, 0.88, 0.89)
    assert selection.value == pytest.approx((0.89 + 0.88 + 0.89) / 3)
    assert HParams(32, 1e-4) in selection.tied_with  # 3 seeds: wide intervals, they overlap
    assert selection.to_json()["point"] == {"batch_size": 16, "learning_rate": 1e-4}
    table = grid_table(point_status(study, space), selection)
    assert "3 seeds: 0.8867 ± 0.0058; chosen" in table
    notes = " ".join(selection_notes(selection, point_status(study, space)))
    assert "differs from the single-seed best" in notes and "cannot be told apart" in notes
    # confirmation trials never count as grid trials, however good
    assert best_grid_trial(study).point == HParams(8, 1e-4)  # type: ignore[union-attr]
    assert all(p.state == "COMPLETE" for p in point_status(study, space))
