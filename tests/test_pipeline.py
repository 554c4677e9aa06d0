"""run() on the trainer seam: it tunes the grid, then trains the replicas of the best point."""

from __future__ import annotations

from pathlib import Path

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, run
from scripted import ScriptedTrainer

SPEC = StudySpec(study_name="p", storage="sqlite:///studies/p.db", confirm_top=0)
SPACE = SearchSpace((8, 16), (1e-3, 1e-4))


def test_run_tunes_then_trains_the_best_point(workdir: Path, tiny_model: Path) -> None:
    trainer = ScriptedTrainer(with_model=True)
    out = run(SPEC, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=1), workdir / "out",
              SPACE, seeds=(1, 2), log_dir=None, trainer=trainer)
    assert out.tuning.best_params == out.replicas.params == HParams(8, 1e-3)
    # every grid point once; replica seed 1 is the best grid trial's kept weights, seed 2 is trained
    assert trainer.calls[len(SPACE):] == [(HParams(8, 1e-3), 2)] and len(trainer.calls) == len(SPACE) + 1
    assert [r.from_trial for r in out.replicas.replicas] == [out.tuning.best.number, None]
