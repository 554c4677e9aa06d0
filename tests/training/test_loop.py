"""fine_tune and evaluate: input order kept, the last epoch's evaluation reused, precision as asked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import optuna_seqclf.training.loop as train_lib
from conftest import CPU
from optuna_seqclf import HParams, MachineSettings
from optuna_seqclf.training.loop import evaluate, fine_tune
from optuna_seqclf.training.optim import autocast_dtype


def test_evaluation_keeps_input_order_and_final_eval_is_the_last_epochs(sst2) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    dev = encoded.dev.select(range(40))
    epochs: list[dict[str, float]] = []
    result = fine_tune(settings.model, prepared.tokenizer, encoded.train.select(range(200)), dev,
                       prepared.corpus.id2label, HParams(16, 1e-3), settings, seed=1, machine=CPU,
                       on_epoch=lambda epoch, metrics: epochs.append(metrics))
    fresh = evaluate(result.model, dev, prepared.tokenizer, batch_size=7)
    assert result.dev.metrics == pytest.approx(fresh.metrics) and result.dev.metrics == pytest.approx(epochs[-1])
    result.model.eval()
    with torch.inference_mode():
        one_by_one = [int(result.model(input_ids=torch.tensor([row["input_ids"]])).logits.argmax())
                      for row in dev]
    assert fresh.predictions.tolist() == one_by_one


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                                  ("fp16", torch.float16)])
def test_precision_sets_the_dtype_layers_compute_in_and_fp16_scales_the_loss(
        sst2, precision: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    seen: set[torch.dtype] = set()
    scaled: list[float] = []
    initial: list[torch.Tensor] = []
    real_load, real_scaler = train_lib.load_model, torch.amp.GradScaler

    def load_and_watch(*args, **kwargs):  # type: ignore[no-untyped-def]
        model = real_load(*args, **kwargs)
        initial.append(model.bert.encoder.layer[0].attention.self.query.weight.detach().clone())
        model.bert.encoder.layer[0].attention.self.query.register_forward_hook(
            lambda module, inputs, output: seen.add(output.dtype))
        return model

    class WatchedScaler(real_scaler):  # type: ignore[misc, valid-type]
        def scale(self, outputs):  # type: ignore[no-untyped-def]
            scaled.append(float(self.get_scale()))
            return super().scale(outputs)

    monkeypatch.setattr(train_lib, "load_model", load_and_watch)
    monkeypatch.setattr(torch.amp, "GradScaler", WatchedScaler)
    train, dev = encoded.train.select(range(160)), encoded.dev.select(range(40))
    result = fine_tune(settings.model, prepared.tokenizer, train, dev, prepared.corpus.id2label, HParams(16, 1e-3),
                       replace(settings, epochs=2), seed=1, machine=replace(CPU, precision=precision))
    assert seen == {dtype}  # training and evaluation forward passes alike
    assert (len(scaled) == 20) == (precision == "fp16")  # fp16 alone scales the loss, on every step
    assert np.isfinite(result.train_metrics["train_loss"]) and np.isfinite(result.log_history[-1]["loss"])
    trained = result.model.bert.encoder.layer[0].attention.self.query.weight
    assert trained.dtype == torch.float32 and torch.isfinite(trained).all()  # the weights stay fp32
    assert not torch.equal(trained, initial[0])  # steps were taken (fp16 skips only the ones that overflow)


def test_precision_is_fp32_unless_asked_and_a_bad_one_is_refused() -> None:
    from optuna_seqclf.errors import ConfigError

    assert MachineSettings().precision == "fp32"
    assert autocast_dtype("fp32") is None
    assert autocast_dtype("bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match=r"^precision 'fp8'"):
        MachineSettings(precision="fp8")


@pytest.mark.parametrize(("epochs", "max_steps", "expected"), [(2.0, None, 2), (0.5, None, 1), (4.0, 3, 1),
                                                               (1.0, 20, 2)])
def test_planned_epochs_are_the_epochs_the_loop_evaluates_after(sst2, epochs: float, max_steps: int | None,  # type: ignore[no-untyped-def]
                                                               expected: int) -> None:
    """The objective never prunes after the last of them (a finished score), --max-steps included."""
    settings, prepared, encoded = sst2
    settings = replace(settings, epochs=epochs, max_steps=max_steps)
    train = encoded.train.select(range(160))  # 10 steps an epoch at batch 16
    seen: list[int] = []
    fine_tune(settings.model, prepared.tokenizer, train, encoded.dev.select(range(20)), prepared.corpus.id2label,
              HParams(16, 1e-3), settings, seed=1, machine=CPU, on_epoch=lambda epoch, metrics: seen.append(epoch))
    assert train_lib.planned_epochs(settings, len(train), 16) == expected == len(seen)


def test_a_batch_in_micro_batches_trains_the_same_weights(sst2, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Batch 32 as 4 x 8 (and as 12 + 12 + 8) gives the weights, loss and gradient norms of 1 x 32: the grid's
    batch size is the effective batch whatever the micro-batch (dropout off, so only float order differs)."""
    settings, prepared, encoded = sst2
    real_load = train_lib.load_model

    def without_dropout(*args, **kwargs):  # type: ignore[no-untyped-def]
        model = real_load(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return model

    monkeypatch.setattr(train_lib, "load_model", without_dropout)
    train, dev = encoded.train.select(range(96)), encoded.dev.select(range(20))

    def run(micro: int | None):  # type: ignore[no-untyped-def]
        result = fine_tune(settings.model, prepared.tokenizer, train, dev, prepared.corpus.id2label,
                           HParams(32, 1e-3), replace(settings, epochs=2), seed=1,
                           machine=replace(CPU, micro_batch_size=micro))
        return result, {k: v.detach().clone() for k, v in result.model.state_dict().items()}

    (whole, whole_weights), *parts = run(None), run(8), run(12)
    for result, weights in parts:
        assert result.train_metrics["global_step"] == whole.train_metrics["global_step"] == 6
        assert result.train_metrics["train_loss"] == pytest.approx(whole.train_metrics["train_loss"], rel=1e-5)
        assert [r["grad_norm"] for r in result.log_history] == pytest.approx(
            [r["grad_norm"] for r in whole.log_history], rel=1e-4)
        worst = max(float((weights[k] - whole_weights[k]).abs().max()) for k in whole_weights)
        assert worst < 1e-5, worst


def test_gradient_checkpointing_recomputes_and_trains_the_same_weights(sst2) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    train, dev = encoded.train.select(range(48)), encoded.dev.select(range(8))
    runs = [fine_tune(settings.model, prepared.tokenizer, train, dev, prepared.corpus.id2label, HParams(16, 1e-3),
                      settings, seed=1, machine=replace(CPU, gradient_checkpointing=on)) for on in (False, True)]
    on = [any(getattr(m, "gradient_checkpointing", False) for m in r.model.modules()) for r in runs]
    assert on == [False, True]
    plain, checkpointed = (r.model.state_dict() for r in runs)
    worst = max(float((plain[k] - checkpointed[k]).abs().max()) for k in plain)
    assert worst < 1e-5, worst  # dropout included: the recomputed forward replays the same random masks
