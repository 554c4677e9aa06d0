"""Fine-tune a pretrained model for one (batch size, learning rate, seed), and evaluate it.

No Optuna and no click here: ``fine_tune`` takes plain values and returns metrics, so the same code
trains tuning trials and final replicas. Training is a plain PyTorch loop with the HF Trainer's default
recipe but none of its per-step machinery (bench/train_throughput.py: the Trainer ran at 0.85 of a
hand-written loop); evaluation is an inference loop that keeps predictions in input order and uses a
large batch. Nothing is written to disk here. Read it top to bottom: ``fine_tune`` sets up a ``_Loop``,
runs its steps epoch by epoch, and evaluates after each epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from optuna_seqclf.data.batches import TensorSplit, collate, epoch_batches
from optuna_seqclf.hooks import EpochHook, LogHook, StepHook
from optuna_seqclf.settings import HParams, MachineSettings, TrainSettings
from optuna_seqclf.training.lora import with_lora
from optuna_seqclf.training.model import load_model, load_weights, on_device, own_weights, resolve_device
from optuna_seqclf.training.optim import GradientNorm, adamw, autocast_dtype, clip_gradients
from optuna_seqclf.training.outputs import (
    decide,
    decide_from_probabilities,
    loss_sum,
    per_label_f1,
    task_metrics,
    task_of,
    tune_thresholds,
)

if TYPE_CHECKING:
    from pathlib import Path

    import datasets
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class EvalResult:
    """Metrics on one split, the predictions and probabilities (``training.outputs.decide``: label ids and the
    softmax for single-label), in the split's order."""

    metrics: dict[str, float]
    predictions: np.ndarray
    probabilities: np.ndarray
    per_class_f1: dict[str, float] = field(default_factory=dict)  # by label name


@dataclass
class FineTuneResult:
    model: PreTrainedModel
    train_metrics: dict[str, float]  # train_runtime (s, training only), train_loss, epoch, global_step, ...
    dev: EvalResult
    history: list[dict[str, float]] = field(default_factory=list)  # dev metrics after each epoch
    eval_seconds: float = 0.0  # dev evaluation, every epoch and final, in seconds
    log_history: list[dict[str, float]] = field(default_factory=list)  # training loss every few steps


class Trainer(Protocol):
    """What trains one (point, seed): ``fine_tune``'s signature. ``tune``, ``train_replicas`` and ``run`` take
    one (``trainer=``), so a caller can swap the training itself (a scripted trainer in tests) and keep every
    other line of the tool; it must be picklable (a module-level function) when ``tune`` starts workers."""

    def __call__(self, model_name: str, tokenizer: PreTrainedTokenizerBase, train: datasets.Dataset,
                 dev: datasets.Dataset, id2label: dict[int, str], hp: HParams, settings: TrainSettings, seed: int,
                 *, machine: MachineSettings | None = None, on_epoch: EpochHook | None = None,
                 on_step: StepHook | None = None, on_log: LogHook | None = None) -> FineTuneResult: ...


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def autocast_for(device_type: str, precision: str) -> torch.autocast:
    """Autocast to ``precision``'s dtype; a disabled context for fp32."""
    import torch

    dtype = autocast_dtype(precision)
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


def logits_by_batch(model: PreTrainedModel, split: TensorSplit, pad_id: int, batch_size: int,
                    precision: str = "fp32") -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """(rows, fp32 logits, labels) for each batch of ``split``, in inference mode on the model's device.

    Batches of similar length, longest first (an out-of-memory error shows on the first batch); the rows
    say where each batch's logits go in input order. ``evaluate`` and ``predict`` both run this loop.
    """
    import torch

    device = next(model.parameters()).device
    order = np.argsort(-split.lengths, kind="stable")
    with torch.inference_mode(), on_device(str(device)):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate(split, rows, pad_id).items()}
            target = batch.pop("labels")
            with autocast_for(device.type, precision):
                logits = model(**batch).logits.float()
            yield rows, logits, target


def evaluate(model: PreTrainedModel, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
             batch_size: int, precision: str = "fp32") -> EvalResult:
    """Loss and metrics on ``dataset`` for the model's task (``training.outputs``); batches of similar length,
    predictions back in input order."""
    was_training = model.training
    model.eval()
    task = task_of(model.config)
    split = TensorSplit.from_dataset(dataset)
    id2label: dict[Any, str] = dict(model.config.id2label or {})
    num_labels = int(model.config.num_labels or len(id2label))
    logits = np.empty((len(split), num_labels), dtype=np.float32)
    total = 0.0
    for rows, out, target in logits_by_batch(model, split, pad_id_of(tokenizer), batch_size, precision):
        total += loss_sum(task, out, target)
        logits[rows] = out.cpu().numpy()
    model.train(was_training)
    # multi-label: the thresholds tuned on dev (``--thresholds tuned``) when the model's config keeps them
    predictions, probabilities = decide(task, logits, getattr(model.config, "thresholds", None))
    return _scored(model, task, split.labels, predictions, probabilities, total / max(1, len(dataset)))


def _scored(model: PreTrainedModel, task: str, truth: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray,
            loss: float) -> EvalResult:
    id2label: dict[Any, str] = dict(model.config.id2label or {})
    names = [str(id2label.get(i, i)) for i in range(probabilities.shape[1])]
    metrics = {**task_metrics(task, truth, predictions), "loss": loss}
    return EvalResult(metrics, predictions, probabilities, per_label_f1(task, truth, predictions, names))


def tuned_thresholds(model: PreTrainedModel, dev: datasets.Dataset, result: EvalResult) -> EvalResult:
    """``--thresholds tuned``: each label's threshold chosen on ``dev`` (``outputs.tune_thresholds``), kept in
    the model's config from here on (test, the saved folder, ``predict``), and ``result`` decided at them."""
    truth = np.asarray(dev["labels"])
    model.config.thresholds = tune_thresholds(truth, result.probabilities)
    predictions = decide_from_probabilities("multi-label", result.probabilities, model.config.thresholds)
    return _scored(model, "multi-label", truth, predictions, result.probabilities, result.metrics["loss"])


def fine_tune(
    model_name: str,
    tokenizer: PreTrainedTokenizerBase,
    train: datasets.Dataset,
    dev: datasets.Dataset,
    id2label: dict[int, str],
    hp: HParams,
    settings: TrainSettings,
    seed: int,
    *,
    machine: MachineSettings | None = None,
    on_epoch: EpochHook | None = None,
    on_step: StepHook | None = None,
    on_log: LogHook | None = None,
) -> FineTuneResult:
    """Fine-tune ``model_name`` on ``train`` and evaluate on ``dev``. Nothing is written to disk.

    The recipe of the HF Trainer's defaults, without its machinery: AdamW (fused where torch has it,
    no weight decay), linear decay to 0 without warm-up, gradient clipping at norm 1.0, batches cut as
    ``settings.batching`` says (by default of similar lengths, in a random order) and padded per batch,
    mixed precision as ``machine.precision`` says (fp16 with a
    ``GradScaler``). ``on_epoch(epoch, dev_metrics)`` runs after every epoch (pruning, curves) and may
    raise to stop; ``on_step(done, total)`` after every optimizer step (progress, Ctrl-C), and may raise
    too; ``on_log(record)`` gets the training loss, learning rate and gradient norm every few steps.
    """
    machine = machine or MachineSettings()
    device = resolve_device(machine)
    with on_device(device):
        loop = _Loop(model_name, tokenizer, train, id2label, hp, settings, seed, machine, device)
        evaluations = _Evaluations(dev, tokenizer, machine)
        started = time.perf_counter()
        epoch = 0
        while loop.step < loop.total:
            epoch += 1
            loop.run_epoch(on_step, on_log)
            if on_epoch is not None:  # after every epoch, the last (maybe partial) one included
                on_epoch(epoch, evaluations.after_epoch(loop.model, epoch).metrics)
        train_metrics = loop.metrics(time.perf_counter() - started - evaluations.seconds)
        dev_result = evaluations.final(loop.model)
        if settings.thresholds == "tuned":
            dev_result = tuned_thresholds(loop.model, dev, dev_result)
    return FineTuneResult(loop.model, train_metrics, dev_result, evaluations.history, evaluations.seconds,
                          loop.log_history)


def from_weights(settings: TrainSettings, id2label: dict[int, str], file: Path, dev: datasets.Dataset,
                 tokenizer: PreTrainedTokenizerBase, machine: MachineSettings, train_metrics: dict[str, float],
                 log_history: list[dict[str, float]], history: list[dict[str, float]]) -> FineTuneResult:
    """What ``fine_tune`` returned for a model whose weights were saved (``model.save_weights``): the model
    (``settings.model``, its task's head, LoRA's adapters) rebuilt from ``file`` on the machine's device and
    evaluated on ``dev`` again; its training records as they were kept. A file that does not fit the model
    is a ModelLoadError."""
    device = resolve_device(machine)
    model = load_weights(settings.model, id2label, file, settings.task, settings.lora)
    with on_device(device):
        model.to(device)  # type: ignore[arg-type]
        begun = time.perf_counter()
        dev_result = evaluate(model, dev, tokenizer, machine.eval_batch_size, machine.precision)
        if settings.thresholds == "tuned":  # the same as the trial chose: the same dev probabilities
            dev_result = tuned_thresholds(model, dev, dev_result)
    return FineTuneResult(model, dict(train_metrics), dev_result, list(history), time.perf_counter() - begun,
                          list(log_history))


def planned_steps(settings: TrainSettings, examples: int, batch_size: int) -> tuple[int, int]:
    """(steps per epoch, steps in all) of a run over ``examples`` training examples: ``max_steps``, or
    ``epochs`` passes (a fraction rounds up to a whole step)."""
    per_epoch = max(1, -(-examples // batch_size))
    return per_epoch, settings.max_steps or max(1, math.ceil(settings.epochs * per_epoch))


def planned_epochs(settings: TrainSettings, examples: int, batch_size: int) -> int:
    """How many epochs a run evaluates after (the last one may be partial): its last is the final score."""
    per_epoch, total = planned_steps(settings, examples, batch_size)
    return math.ceil(total / per_epoch)


class _Loop:
    """One fine-tuning run: the model, its optimizer and schedule, and the step loop over the batches."""

    def __init__(self, model_name: str, tokenizer: PreTrainedTokenizerBase, train: datasets.Dataset,
                 id2label: dict[int, str], hp: HParams, settings: TrainSettings, seed: int,
                 machine: MachineSettings, device_name: str) -> None:
        import torch
        from transformers import set_seed

        self.device = device = torch.device(device_name)
        set_seed(seed)  # before the model: the new classification head is initialised from this seed
        model = load_model(model_name, id2label, settings.task)
        # in place, as nn.Module.to is; transformers wraps PreTrainedModel.to in a decorator that mistypes it
        model.to(device)  # type: ignore[arg-type]
        self.model = own_weights(model)
        if settings.lora is not None:  # adapters on the targets; only they and the head train
            self.model = with_lora(self.model, settings.lora)
        if machine.gradient_checkpointing:  # activations recomputed in the backward pass: less memory, more time
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.split = TensorSplit.from_dataset(train)
        self.batch_size, self.batching = hp.batch_size, settings.batching
        # the grid's batch size is the effective batch; it runs as micro-batches of at most this many examples
        self.micro = min(machine.micro_batch_size or hp.batch_size, hp.batch_size)
        self.steps_per_epoch, self.total = planned_steps(settings, len(self.split), hp.batch_size)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = adamw(self.params, hp.learning_rate, device)
        self.norm_of = GradientNorm(self.model, self.params)
        total = self.total
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: max(0.0, (total - s) / total))
        self.autocast = autocast_for(device.type, machine.precision)
        # fp16 needs loss scaling: small gradients would underflow to 0 (bf16 has fp32's range and needs none)
        fp16 = autocast_dtype(machine.precision) == torch.float16
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.pad_id = pad_id_of(tokenizer)
        self.multiple = 8 if device.type == "cuda" else 1  # tensor cores like multiples of 8
        self.log_every = max(1, min(50, self.steps_per_epoch // 4))
        self.rng = np.random.default_rng(seed)
        self.loss_sum = torch.zeros((), device=device)
        self.logged_sum, self.logged_at, self.step = 0.0, 0, 0
        self.log_history: list[dict[str, float]] = []
        self.model.train()

    def run_epoch(self, on_step: StepHook | None, on_log: LogHook | None) -> None:
        """Steps over one shuffled pass of the training set, batched as ``settings.batching`` says (fewer at
        ``max_steps``)."""
        for rows in epoch_batches(self.split.lengths, self.batch_size, self.rng, self.batching):
            grad_norm = self.train_step(rows)
            self.step += 1
            if self.step % self.log_every == 0 or self.step == self.total:
                record = self.log_record(grad_norm)
                if on_log is not None:
                    on_log(record)
            if on_step is not None:
                on_step(self.step, self.total)
            if self.step >= self.total:
                return

    def train_step(self, rows: np.ndarray) -> torch.Tensor:
        """One optimizer step over the batch ``rows``: forward and backward in micro-batches of ``self.micro``
        examples (each loss weighted by its share of the batch, so the gradients are the batch's mean, as one
        pass over it gives), then clip and update once; return the gradient norm before clipping."""
        import torch

        token_ids = []
        for start in range(0, len(rows), self.micro):
            part = rows[start:start + self.micro]
            batch = collate(self.split, part, self.pad_id, self.multiple)
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with self.autocast:
                loss = self.model(**batch).loss
            if len(part) < len(rows):
                loss = loss * (len(part) / len(rows))
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()
            self.loss_sum += loss.detach().float()
            token_ids.append(batch["input_ids"].reshape(-1))
        ids = token_ids[0] if len(token_ids) == 1 else torch.cat(token_ids)
        if self.scaler is None:
            grad_norm = clip_gradients(self.params, self.device, self.optimizer, total=self.norm_of(ids))
            self.optimizer.step()
        else:  # unscale first so that clipping sees the real norm; the step is skipped on inf/nan
            self.scaler.unscale_(self.optimizer)  # GradScaler.step then keeps the fused clipping's grad_scale
            grad_norm = clip_gradients(self.params, self.device, self.optimizer, total=self.norm_of(ids))
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def log_record(self, grad_norm: torch.Tensor) -> dict[str, float]:
        """The mean training loss since the last record, learning rate and gradient norm (one device sync)."""
        running = float(self.loss_sum)
        record = {"loss": (running - self.logged_sum) / (self.step - self.logged_at),
                  "learning_rate": float(self.schedule.get_last_lr()[0]), "grad_norm": float(grad_norm),
                  "step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4)}
        self.logged_sum, self.logged_at = running, self.step
        self.log_history.append(record)
        return record

    def metrics(self, runtime: float) -> dict[str, float]:
        """The HF Trainer's train metrics: runtime (training only), throughput, mean loss, epochs, steps."""
        return {
            "train_runtime": round(runtime, 4),
            "train_samples_per_second": round(self.step * self.batch_size / runtime, 3),
            "train_steps_per_second": round(self.step / runtime, 3),
            "train_loss": float(self.loss_sum) / max(1, self.step),
            "epoch": round(self.step / self.steps_per_epoch, 4), "global_step": float(self.step),
        }


class _Evaluations:
    """Dev evaluations of one run: after each epoch (when asked) and the final one, timed apart."""

    def __init__(self, dev: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, machine: MachineSettings) -> None:
        self.dev, self.tokenizer, self.machine = dev, tokenizer, machine
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0
        self.last: EvalResult | None = None

    def run(self, model: PreTrainedModel) -> EvalResult:
        begun = time.perf_counter()
        self.last = evaluate(model, self.dev, self.tokenizer, self.machine.eval_batch_size, self.machine.precision)
        self.seconds += time.perf_counter() - begun
        return self.last

    def after_epoch(self, model: PreTrainedModel, epoch: int) -> EvalResult:
        result = self.run(model)
        self.history.append({"epoch": float(epoch), **result.metrics})
        return result

    def final(self, model: PreTrainedModel) -> EvalResult:
        """The last epoch's evaluation when there was one (the model has not changed since), else a new one."""
        return self.last if self.last is not None else self.run(model)
