"""Out of memory never loses a point: the same (point, seed) again with half the micro-batch, down to 1, then
INFEASIBLE, a state of its own. The error is injected on the CPU where a GPU would raise it: the first step,
mid-epoch, an evaluation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import optuna_seqclf.training.loop as train_lib
from conftest import CPU, EXAMPLE_DATA
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, tune
from optuna_seqclf.errors import ConfigError
from optuna_seqclf.report.markdown import list_studies, studies_table
from optuna_seqclf.report.tables import grid_table
from optuna_seqclf.training.loop import fine_tune
from optuna_seqclf.training.memory import Infeasible, fit_in_memory, is_out_of_memory
from scripted import ScriptedTrainer

OOM = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _cap(monkeypatch: pytest.MonkeyPatch, *, micro_above: int = 10**9, eval_above: int = 10**9,
         at_step: int = 1) -> list[int]:
    """Make training steps from ``at_step`` on run out of memory while the micro-batch is above ``micro_above``,
    and evaluations whose batch is above ``eval_above``; return the micro-batch of every step tried."""
    tried: list[int] = []
    real_step, real_eval = train_lib._Loop.train_step, train_lib.evaluate

    def step(self, rows):  # type: ignore[no-untyped-def]
        tried.append(self.micro)
        if self.step + 1 >= at_step and self.micro > micro_above:
            raise OOM
        return real_step(self, rows)

    def evaluate(model, dataset, tokenizer, batch_size, precision="fp32"):  # type: ignore[no-untyped-def]
        if batch_size > eval_above:
            raise OOM
        return real_eval(model, dataset, tokenizer, batch_size, precision)

    monkeypatch.setattr(train_lib._Loop, "train_step", step)
    monkeypatch.setattr(train_lib, "evaluate", evaluate)
    return tried


def _train(sst2, machine):  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    return fine_tune(settings.model, prepared.tokenizer, encoded.train.select(range(64)), encoded.dev.select(range(16)),
                     prepared.corpus.id2label, HParams(16, 1e-3), settings, seed=1, machine=machine)


@pytest.mark.parametrize("at_step", [1, 3])  # the first step, and mid-epoch (4 steps of 16 in an epoch)
def test_out_of_memory_in_training_retries_the_point_with_half_the_micro_batch(
        sst2, monkeypatch: pytest.MonkeyPatch, at_step: int) -> None:  # type: ignore[no-untyped-def]
    direct = _train(sst2, replace(CPU, micro_batch_size=4))
    tried = _cap(monkeypatch, micro_above=4, at_step=at_step)
    notes: list[str] = []
    result, used = fit_in_memory(lambda machine: _train(sst2, machine), CPU, 16, notes.append)
    assert used.micro_batch_size == 4 and tried[0] == 16 and tried.count(8) == at_step and tried[-1] == 4
    assert len(notes) == 2 and "the same point again with micro-batch 8" in notes[0]
    # the retry is the same (point, seed) from scratch: the run a micro-batch of 4 gives from the start
    for name, weight in direct.model.state_dict().items():
        assert torch.equal(weight, result.model.state_dict()[name]), name
    assert result.dev.metrics == direct.dev.metrics


def test_out_of_memory_in_evaluation_halves_the_evaluation_batch(sst2, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _cap(monkeypatch, eval_above=40)
    _, used = fit_in_memory(lambda machine: _train(sst2, machine), replace(CPU, eval_batch_size=128), 16)
    assert (used.eval_batch_size, used.micro_batch_size) == (32, 4)


def test_a_point_that_never_fits_is_infeasible_and_other_errors_pass_through(sst2, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    tried = _cap(monkeypatch, micro_above=0)
    with pytest.raises(Infeasible, match="even one example at a time"):
        fit_in_memory(lambda machine: _train(sst2, machine), CPU, 16)
    assert tried == [16, 8, 4, 2, 1]
    calls: list[int] = []

    def broken(machine):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        fit_in_memory(broken, CPU, 16)
    assert calls == [1]
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(RuntimeError("out of memory (simulated)"))  # a crash, not the device's memory


def test_an_infeasible_point_is_a_state_of_its_own_and_never_retried(workdir: Path, tiny_model: Path) -> None:
    scripted = ScriptedTrainer()
    tried: list[tuple[int, int | None]] = []

    def trainer(*args, machine=None, **kwargs):  # type: ignore[no-untyped-def]
        hp = args[5]
        tried.append((hp.batch_size, machine.micro_batch_size))
        if hp.batch_size == 32 or machine.micro_batch_size > 8:  # 32 never fits; 16 fits as 2 x 8
            raise OOM
        return scripted(*args, machine=machine, **kwargs)

    spec = StudySpec(study_name="oom", storage="sqlite:///studies/oom.db", max_retries=2, confirm_top=0)
    settings, space = TrainSettings(model=str(tiny_model), epochs=1), SearchSpace((8, 16, 32), (1e-3,))
    lines: list[str] = []
    result = tune(spec, DataSpec(EXAMPLE_DATA), settings, space, tracking=None, trainer=trainer, progress=lines.append)
    states = {p.point.batch_size: p.state for p in result.points}
    assert states == {8: "COMPLETE", 16: "COMPLETE", 32: "INFEASIBLE"}
    assert [m for bs, m in tried if bs == 32] == [32, 16, 8, 4, 2, 1]  # one trial, halving, then given up
    assert any("INFEASIBLE (out of memory at batch size 32" in line and "not retried" in line for line in lines)
    assert any("micro-batch 8" in line for line in lines)  # batch 16 trained as 2 x 8, and the line says so
    import optuna

    recorded = {t.params["batch_size"]: t.user_attrs for t in optuna.load_study(study_name="oom",
                                                                                   storage=spec.storage).trials}
    assert recorded[16]["micro_batch_size"] == 8 and recorded[8]["micro_batch_size"] == 8
    assert "out of memory" in recorded[32]["infeasible"] and recorded[32]["error"].startswith("infeasible: ")
    assert "infeasible" in grid_table(result.points)
    assert "0 + 1 infeasible" in studies_table(list_studies([spec.storage]))
    again = tune(spec, DataSpec(EXAMPLE_DATA), settings, space, tracking=None, trainer=trainer)
    assert again.stats.trained == 0 and [m for bs, m in tried if bs == 32] == [32, 16, 8, 4, 2, 1]
    assert [p.point.batch_size for p in again.failed_points] == [32]


def test_a_micro_batch_above_every_batch_size_is_refused(workdir: Path, tiny_model: Path) -> None:
    with pytest.raises(ConfigError, match="micro_batch_size 64 is above the grid's largest batch size 32"):
        tune(StudySpec(study_name="m", storage="sqlite:///studies/m.db"), DataSpec(EXAMPLE_DATA),
             TrainSettings(model=str(tiny_model)), SearchSpace((8, 32), (1e-3,)),
             machine=replace(CPU, micro_batch_size=64), tracking=None)
    assert not (workdir / "studies" / "m.db").exists()
