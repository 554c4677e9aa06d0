"""confirm: the stage's plan, its candidates, when it waits, and what an unfinished stage means."""

from __future__ import annotations

from optuna.trial import TrialState
from test_selection import RATES, SIZES, _add, _grid, _study

from optuna_seqclf.report.tables import selection_notes
from optuna_seqclf.settings import HParams
from optuna_seqclf.study.confirm import ConfirmPlan, candidates, next_confirmation
from optuna_seqclf.study.queue import point_status
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.selection import select
from optuna_seqclf.study.steps import Done, TrainPoint, Wait


def test_an_unfinished_stage_leaves_the_single_seed_choice_and_says_so() -> None:
    study = _study(top=2, more=1)
    _grid(study, {(8, 1e-4): 0.90, (16, 1e-4): 0.89})
    space = StudyRecord.from_study(study).space
    plan = StudyRecord.from_study(study).confirm_plan()
    assert next_confirmation(study, point_status(study, space), plan, 2) == TrainPoint(HParams(8, 1e-4), 2)
    _add(study, 0.7, 8, 1e-4, seed=2)
    assert next_confirmation(study, point_status(study, space), plan, 2) == TrainPoint(HParams(16, 1e-4), 2)
    selection = select(study)
    assert selection.rule == "single-seed" and selection.pending == 1 and selection.point == HParams(8, 1e-4)
    assert "not finished (1 run(s) left)" in " ".join(selection_notes(selection, point_status(study, space)))


def test_the_stage_waits_for_running_grid_points_and_skips_pruned_and_failed_ones() -> None:
    study = _study(top=3, more=1)
    for bs in SIZES:
        for lr in RATES:
            if (bs, lr) == (32, 1e-3):
                _add(study, None, bs, lr, state=TrialState.RUNNING)
            elif (bs, lr) == (8, 1e-4):
                _add(study, None, bs, lr, state=TrialState.PRUNED)
            elif (bs, lr) == (16, 1e-4):
                _add(study, 0.99, bs, lr, failed="predicts one class")
            else:
                _add(study, 0.5 + bs / 100 + lr * 10, bs, lr)
    space = StudyRecord.from_study(study).space
    plan = StudyRecord.from_study(study).confirm_plan()
    assert next_confirmation(study, point_status(study, space), plan, 2) == Wait()
    top = [c.point for c in candidates(point_status(study, space), plan)]
    assert HParams(8, 1e-4) not in top and HParams(16, 1e-4) not in top and len(top) == 3


def test_confirm_top_zero_is_the_single_seed_argmax() -> None:
    study = _study(top=0, more=2)
    _grid(study, {(8, 1e-4): 0.90, (16, 1e-4): 0.89})
    space = StudyRecord.from_study(study).space
    plan = StudyRecord.from_study(study).confirm_plan()
    assert not plan.active and next_confirmation(study, point_status(study, space), plan, 2) == Done()
    selection = select(study)
    assert selection.rule == "single-seed" and selection.point == HParams.from_params(study.best_params)
    # one candidate leaves nothing to choose between: no stage either
    lone = _study(top=3, more=2)
    _add(lone, 0.9, 8, 1e-4)
    assert candidates(point_status(lone, StudyRecord.from_study(lone).space), ConfirmPlan(3, (2, 3))) == []
