"""run() on the trainer seam: it tunes the grid, then trains the replicas of the best point."""

from __future__ import annotations

import math
from pathlib import Path

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, run
from scripted import ScriptedTrainer

SPEC = StudySpec(study_name="p", storage="sqlite:///studies/p.db", confirm_top=0)
SPACE = SearchSpace((8, 16), (1e-3, 1e-4))


def test_run_tunes_then_trains_the_best_point(workdir: Path, tiny_model: Path) -> None:
    trainer = ScriptedTrainer(with_model=True)
    out = run(SPEC, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1), workdir / "out",
              SPACE, seeds=(1, 2), tracking=None, trainer=trainer)
    assert out.tuning.best_params == out.replicas.params == HParams(8, 1e-3)
    # every grid point once; replica seed 1 is the best grid trial's kept weights, seed 2 is trained
    assert trainer.calls[len(SPACE):] == [(HParams(8, 1e-3), 2)] and len(trainer.calls) == len(SPACE) + 1
    assert [r.from_trial for r in out.replicas.replicas] == [out.tuning.best.number, None]


def test_every_point_and_seed_is_trained_at_most_once_in_the_whole_job(workdir: Path, tiny_model: Path) -> None:
    """Pruning, the confirmation stage and the replicas together: the chosen point's grid trial and its
    confirmation run are replicas 1 and 2; only seed 3 is trained by `train`."""
    from collections import Counter

    def best_at_1e4(hp: HParams, seed: int) -> float:  # the far-off 1e-3 points come later and are pruned
        return round(0.9 - 0.05 * abs(math.log10(hp.learning_rate) + 4) - hp.batch_size / 1000 + seed / 10_000, 6)

    trainer = ScriptedTrainer(score=best_at_1e4, with_model=True)
    spec = StudySpec(study_name="once", storage="sqlite:///studies/once.db", pruner="median", confirm_top=2,
                     confirm_seeds=1)
    out = run(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=2), workdir / "out",
              SearchSpace((8, 16, 32), (1e-3, 1e-4)), seeds=(1, 2, 3), tracking=None, trainer=trainer)
    assert set(Counter(trainer.calls).values()) == {1}  # no (point, seed) twice
    assert any(p.state == "PRUNED" for p in out.tuning.points) and out.tuning.selection.confirmed
    chosen = out.replicas.params
    assert [(r.seed, r.from_trial is not None) for r in out.replicas.replicas] == [(1, True), (2, True), (3, False)]
    assert trainer.calls[-1] == (chosen, 3)
    # what is left in the store: the chosen point's two runs, nothing else
    assert len(list((workdir / "studies" / "once.artifacts").iterdir())) == 2
