"""train_replicas on the trainer seam: one folder per seed with the study's best point, complete ones reused, a
failed run replaced on request and left out of the mean and the ensemble. The scripted trainer stands in
for the training (the saved models are the untrained tiny BERT, scored for real)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, train_replicas, tune
from optuna_seqclf.training.loop import FineTuneResult
from optuna_seqclf.training.replica_folder import COMPLETE_MARKER, SUMMARY_FILE
from scripted import ScriptedTrainer

SPEC = StudySpec(study_name="r", storage="sqlite:///studies/r.db", confirm_top=0)
SPACE = SearchSpace((8, 16), (1e-3, 1e-4))


class OneClassOnSeed(ScriptedTrainer):
    """Seed ``seed``'s replica predicts one class for every dev example: a failed run."""

    def __call__(self, *args, **kwargs) -> FineTuneResult:  # type: ignore[no-untyped-def]
        result = super().__call__(*args, **kwargs)
        if args[7] == 1:
            result.dev.predictions[:] = 0
        return result


def _tuned(model: Path) -> None:
    tune(SPEC, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(model), epochs=1), SPACE, tracking=None,
         trainer=ScriptedTrainer())


def test_replicas_of_the_best_point_are_written_and_reused(workdir: Path, tiny_model: Path) -> None:
    _tuned(tiny_model)
    trainer = ScriptedTrainer(with_model=True)
    result = train_replicas("r", SPEC.storage, workdir / "out", seeds=(1, 2), tracking=None, trainer=trainer)
    assert result.params == HParams(8, 1e-3)  # the scripted scores' best point
    assert [hp for hp, _ in trainer.calls] == [HParams(8, 1e-3)] * 2 and [s for _, s in trainer.calls] == [1, 2]
    folders = [Path(r.path) for r in result.replicas]
    assert all((f / COMPLETE_MARKER).is_file() and (f / "model.safetensors").is_file() for f in folders)
    summary = json.loads((workdir / "out" / SUMMARY_FILE).read_text())
    assert summary["best_dev_f1"] == result.best_dev_value == result.best_dev_f1  # the file's key, as before
    again = ScriptedTrainer(with_model=True)
    train_replicas("r", SPEC.storage, workdir / "out", seeds=(1, 2), tracking=None, trainer=again)
    assert again.calls == []  # complete replicas are read back, not trained again


def test_a_failed_replica_is_replaced_and_left_out(workdir: Path, tiny_model: Path) -> None:
    _tuned(tiny_model)
    result = train_replicas("r", SPEC.storage, workdir / "out", seeds=(1, 2), tracking=None, replace_failed=True,
                            trainer=OneClassOnSeed(with_model=True))
    assert [r.seed for r in result.replicas] == [1, 2, 3] and [r.seed for r in result.failed] == [1]
    assert "predicts one class, '0'" in str(result.replicas[0].failed_run)
    assert result.ensemble.seeds == (2, 3)
    assert result.summary["dev_f1"].mean == np.mean([r.scores["dev_f1"] for r in result.replicas[1:]])
