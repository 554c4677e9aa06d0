"""The replica job's kept weights: a seed the study trained and kept is made from the trial's weights, identical
to training it afresh; when the weights are gone or were trained otherwise, the seed is trained and the line
says why."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, train_replicas, tune
from optuna_seqclf.training.replica_folder import COMPLETE_MARKER
from scripted import ScriptedTrainer


def _tune_for_reuse(model: Path) -> StudySpec:
    spec = StudySpec(study_name="reuse", storage="sqlite:///studies/reuse.db", confirm_top=0)
    tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(model), epochs=1), SearchSpace((8,), (1e-3, 1e-4)),
         tracking=None)
    return spec


def test_a_kept_trial_is_the_replica_training_would_make(workdir: Path, tiny_model: Path) -> None:
    """Real training (the tiny BERT, same process, same threads): the replica taken from the study's trial has
    the weights, dev and test results of one trained afresh for the same (point, seed)."""
    from safetensors.torch import load_file

    spec = _tune_for_reuse(tiny_model)
    lines: list[str] = []
    reused = train_replicas("reuse", spec.storage, workdir / "a", seeds=(1, 2), tracking=None, progress=lines.append)
    fresh = train_replicas("reuse", spec.storage, workdir / "b", seeds=(1,), tracking=None, artifact_store="none")
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
    assert reused.replicas[0].scores["dev_f1"] == fresh.replicas[0].scores["dev_f1"] == reused.best_dev_value


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
    result = train_replicas("reuse", spec.storage, workdir / "a", seeds=(1,), model=str(other), tracking=None,
                            progress=lines.append, trainer=trainer)
    assert result.replicas[0].from_trial is None and [s for _, s in trainer.calls] == [1]
    assert any("cannot be used (trained with other settings: model" in line for line in lines)
    for stored in (workdir / "studies" / "reuse.artifacts").iterdir():
        stored.unlink()
    lines.clear()
    result = train_replicas("reuse", spec.storage, workdir / "b", seeds=(1,), tracking=None, progress=lines.append,
                            trainer=trainer)
    assert result.replicas[0].from_trial is None and len(trainer.calls) == 2
    assert any("is not in the store" in line and "training it" in line for line in lines)
