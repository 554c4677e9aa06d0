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
    tune(SPEC, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(model), epochs=1), SPACE, log_dir=None,
         trainer=ScriptedTrainer())


def test_replicas_of_the_best_point_are_written_and_reused(workdir: Path, tiny_model: Path) -> None:
    _tuned(tiny_model)
    trainer = ScriptedTrainer(with_model=True)
    result = train_replicas("r", SPEC.storage, workdir / "out", seeds=(1, 2), log_dir=None, trainer=trainer)
    assert result.params == HParams(8, 1e-3)  # the scripted scores' best point
    assert [hp for hp, _ in trainer.calls] == [HParams(8, 1e-3)] * 2 and [s for _, s in trainer.calls] == [1, 2]
    folders = [Path(r.path) for r in result.replicas]
    assert all((f / COMPLETE_MARKER).is_file() and (f / "model.safetensors").is_file() for f in folders)
    summary = json.loads((workdir / "out" / SUMMARY_FILE).read_text())
    assert summary["best_dev_f1"] == result.best_dev_value == result.best_dev_f1  # the file's key, as before
    again = ScriptedTrainer(with_model=True)
    train_replicas("r", SPEC.storage, workdir / "out", seeds=(1, 2), log_dir=None, trainer=again)
    assert again.calls == []  # complete replicas are read back, not trained again


def test_a_failed_replica_is_replaced_and_left_out(workdir: Path, tiny_model: Path) -> None:
    _tuned(tiny_model)
    result = train_replicas("r", SPEC.storage, workdir / "out", seeds=(1, 2), log_dir=None, replace_failed=True,
                            trainer=OneClassOnSeed(with_model=True))
    assert [r.seed for r in result.replicas] == [1, 2, 3] and [r.seed for r in result.failed] == [1]
    assert "predicts one class, '0'" in str(result.replicas[0].failed_run)
    assert result.ensemble.seeds == (2, 3)
    assert result.summary.dev_f1.mean == np.mean([r.dev_f1 for r in result.replicas[1:]])


def _tune_for_reuse(model: Path) -> StudySpec:
    spec = StudySpec(study_name="reuse", storage="sqlite:///studies/reuse.db", confirm_top=0)
    tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(model), epochs=1), SearchSpace((8,), (1e-3, 1e-4)),
         log_dir=None)
    return spec


def test_a_kept_trial_is_the_replica_training_would_make(workdir: Path, tiny_model: Path) -> None:
    """Real training (the tiny BERT, same process, same threads): the replica taken from the study's trial has
    the weights, dev and test results of one trained afresh for the same (point, seed)."""
    from safetensors.torch import load_file

    spec = _tune_for_reuse(tiny_model)
    lines: list[str] = []
    reused = train_replicas("reuse", spec.storage, workdir / "a", seeds=(1, 2), log_dir=None, progress=lines.append)
    fresh = train_replicas("reuse", spec.storage, workdir / "b", seeds=(1,), log_dir=None, artifact_store="none")
    best_trial = reused.replicas[0].from_trial
    assert best_trial is not None and reused.replicas[1].from_trial is None and fresh.replicas[0].from_trial is None
    assert f"Replicas: seed(s) 1 from the study's trial(s) {best_trial}; seed(s) 2 trained" in lines
    a, b = Path(reused.replicas[0].path), Path(fresh.replicas[0].path)
    weights_a, weights_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch_equal(weights_a[k], weights_b[k]) for k in weights_a)
    for name in ("eval_results.json", "test_results.json", "test_predictions.txt"):
        assert (a / name).read_text() == (b / name).read_text()
    args_a, args_b = (json.loads((f / "training_args.json").read_text()) for f in (a, b))
    assert args_a["from_trial"]["trial"] == best_trial and args_b["from_trial"] is None
    assert args_a["trained_on"] == args_b["trained_on"] and args_a["trained_on"]["device"] == "cpu"
    assert json.loads((a / COMPLETE_MARKER).read_text())["from_trial"] == best_trial
    assert reused.replicas[0].dev_f1 == fresh.replicas[0].dev_f1 == reused.best_dev_value


def torch_equal(x, y) -> bool:  # type: ignore[no-untyped-def]
    import torch

    return bool(torch.equal(x, y))


def test_a_replica_is_trained_when_the_kept_weights_are_gone_or_do_not_fit(workdir: Path, tiny_model: Path) -> None:
    import shutil

    spec = _tune_for_reuse(tiny_model)
    other = workdir / "other-model"
    shutil.copytree(tiny_model, other)
    lines: list[str] = []
    trainer = ScriptedTrainer(with_model=True)
    result = train_replicas("reuse", spec.storage, workdir / "a", seeds=(1,), model=str(other), log_dir=None,
                            progress=lines.append, trainer=trainer)
    assert result.replicas[0].from_trial is None and [s for _, s in trainer.calls] == [1]
    assert any("cannot be used (trained with other settings: model" in line for line in lines)
    for stored in (workdir / "studies" / "reuse.artifacts").iterdir():
        stored.unlink()
    lines.clear()
    result = train_replicas("reuse", spec.storage, workdir / "b", seeds=(1,), log_dir=None, progress=lines.append,
                            trainer=trainer)
    assert result.replicas[0].from_trial is None and len(trainer.calls) == 2
    assert any("is not in the store" in line and "training it" in line for line in lines)
