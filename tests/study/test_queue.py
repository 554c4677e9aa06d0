"""The exactly-once protocol: the order of the first pass, the queue, overflow and owner checks."""

from __future__ import annotations

import threading

import optuna
import pytest

from optuna_seqclf.settings import HParams, SearchSpace
from optuna_seqclf.study.queue import (
    enqueue_point,
    enqueue_untaken,
    grid_order,
    is_overflow,
    owner_of,
    promise_rank,
    shuffled_order,
)
from optuna_seqclf.study.schema import POINT_ATTR
from optuna_seqclf.tuning.objective import suggest_hparams


def _sampler_order(space: SearchSpace, seed: int) -> list[HParams]:
    """The order in which a real GridSampler study hands out the grid."""
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.as_grid(), seed=seed))
    return [suggest_hparams(study.ask(), space) for _ in range(len(space))]


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("space", [SearchSpace(), SearchSpace((32, 8), (5e-5, 1e-4, 2e-5))])
def test_shuffled_order_is_optunas_grid_sampler_order(space: SearchSpace, seed: int) -> None:
    """GridSampler keeps its order private: if an Optuna release changes its recipe, this fails, and resumed
    studies made before the queue would train points twice. Fix ``grid.shuffled_order`` then."""
    assert shuffled_order(space, seed) == _sampler_order(space, seed)


def test_promising_first_order_starts_with_the_typical_fine_tuning_settings() -> None:
    points = [(p.batch_size, p.learning_rate) for p in grid_order(SearchSpace(), 1)]
    assert len(set(points)) == 36  # every point of the default grid once
    assert sorted(points[:2]) == [(16, 3e-5), (32, 3e-5)] and points[2] == (8, 3e-5)
    assert points[3][1] == 5e-5 and {lr for _, lr in points[-9:]} == {1e-3, 3e-3, 5e-3}  # far-off last
    ranks = [promise_rank(bs, lr) for bs, lr in points]
    assert ranks == sorted(ranks)


def test_the_queue_hands_each_point_to_one_trial_in_order() -> None:
    space = SearchSpace((8, 16), (1e-3, 1e-4))
    study = optuna.create_study(direction="maximize")
    order = grid_order(space, 1)
    assert enqueue_untaken(study, order) == 4
    asked = [study.ask() for _ in range(4)]
    assert [suggest_hparams(t, space) for t in asked] == order
    assert all(not is_overflow(t.number, t.user_attrs, space) for t in asked)
    assert enqueue_untaken(study, order) == 0  # every point is taken now


def test_trial_beyond_the_grid_trains_nothing() -> None:
    space = SearchSpace((8,), (1e-3, 1e-4))
    study = optuna.create_study(direction="maximize")
    enqueue_untaken(study, grid_order(space, 1))
    first_pass = [study.ask(), study.ask()]
    assert not any(is_overflow(t.number, t.user_attrs, space) for t in first_pass)
    raced = study.ask()  # a third worker found the queue empty: the sampler made this one
    assert POINT_ATTR not in raced.user_attrs and is_overflow(raced.number, raced.user_attrs, space)
    enqueue_point(study, HParams(8, 1e-3))
    retry = study.ask()
    assert not is_overflow(retry.number, retry.user_attrs, space)  # a retry is enqueued: it has its point


def test_owner_check_waits_for_an_earlier_trial_to_name_its_point() -> None:
    study = optuna.create_study(direction="maximize")
    earlier = study.ask()  # running, made by the sampler of an older study: it has not said its point yet
    enqueue_point(study, HParams(8, 1e-4))
    later = study.ask()
    point = HParams(8, 1e-4)
    assert owner_of(study, later.number, point, wait_s=0.2) is None  # nobody has claimed it within the wait
    timer = threading.Timer(0.3, lambda: suggest_hparams(earlier, SearchSpace((8,), (1e-4,))))
    timer.start()
    assert owner_of(study, later.number, point, wait_s=10) == earlier.number  # waited, then saw the claim
    timer.join()
