"""Load a pretrained model and fine-tune it for one (batch size, learning rate, seed).

No Optuna and no click here: ``fine_tune`` takes plain values and returns metrics, so the same code
trains tuning trials and final replicas. Training runs on the HF ``Trainer`` (length-grouped batches,
dynamic padding, fused AdamW, no checkpoints); evaluation is a small inference loop of our own that
keeps predictions in input order and uses a large batch.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import TrainerCallback

from .config import HParams, TrainSettings
from .errors import ConfigError, ModelLoadError, first_line

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

EpochHook = Callable[[int, dict[str, float]], None]
StepHook = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class EvalResult:
    """Metrics on one split and the predicted label ids, in the split's order."""

    metrics: dict[str, float]
    predictions: np.ndarray


@dataclass
class FineTuneResult:
    model: PreTrainedModel
    trainer: Trainer
    train_metrics: dict[str, float]
    dev: EvalResult
    history: list[dict[str, float]] = field(default_factory=list)
    eval_seconds: float = 0.0  # dev evaluation, every epoch and final, in seconds


def quiet_libraries() -> None:
    """Silence the per-trial chatter of transformers/datasets (weights not initialised, etc.)."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*torch.utils._pytree.*")


def default_threads(workers: int = 1) -> int:
    """The CPU cores this process may use, shared among ``workers`` processes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def configure_torch(settings: TrainSettings, workers: int = 1) -> None:
    import torch

    torch.set_num_threads(settings.threads or default_threads(workers))


def check_device(settings: TrainSettings) -> None:
    import torch

    device = settings.device or ""
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} visible CUDA GPU(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: Apple's MPS backend is not available here")


def assign_device(settings: TrainSettings, worker: int) -> TrainSettings:
    """Spread workers over the visible GPUs (worker i -> cuda:i mod n) unless a device was chosen."""
    import torch

    if settings.device is None and torch.cuda.device_count() > 1:
        return replace(settings, device=f"cuda:{worker % torch.cuda.device_count()}")
    return settings


def resolve_device(settings: TrainSettings) -> str:
    """The device to train on. ``cuda:N`` makes GPU N the current device and returns ``cuda``:
    the Trainer (through accelerate) trains on the current CUDA device."""
    import torch

    device = settings.device
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda:"):
        torch.cuda.set_device(int(device.split(":", 1)[1]))
        return "cuda"
    return device


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    _check_local_path(name, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for a bad folder
        raise ModelLoadError(f"{name}: cannot load a tokenizer ({first_line(exc)})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"{name}: only fast (Rust) tokenizers are supported; it has no tokenizer.json")
    return tokenizer


def load_model(name: str, id2label: dict[int, str]) -> PreTrainedModel:
    """A sequence classifier from ``name`` with a fresh head for our labels (seed first for the head)."""
    from transformers import AutoModelForSequenceClassification

    _check_local_path(name, "model")
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            name,
            num_labels=len(id2label),
            id2label=id2label,
            label2id={label: i for i, label in id2label.items()},
            ignore_mismatched_sizes=True,
        )
    except Exception as exc:
        raise ModelLoadError(f"{name}: cannot load a model ({first_line(exc)})") from None


def check_model_config(name: str, tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail fast (config only, no weights) when the model or its vocabulary does not fit the tokenizer."""
    from transformers import AutoConfig

    _check_local_path(name, "model")
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as exc:
        raise ModelLoadError(f"{name}: not a model folder or known model ({first_line(exc)})") from None
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise ModelLoadError(
            f"{name}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {vocab}; "
            "pass the tokenizer the model was trained with (--tokenizer)"
        )


def _check_local_path(name: str, what: str) -> None:
    path = Path(name)
    looks_local = name.startswith((".", "/", "~")) or path.exists() or name.count("/") > 1
    if not looks_local:
        return  # a hub name: transformers resolves it (from its cache when offline)
    if not path.exists():
        raise ModelLoadError(f"{name}: {what} folder not found")
    if not path.is_dir():
        raise ModelLoadError(f"{name}: is a file; expected a Hugging Face {what} folder")
    if not any(path.iterdir()):
        raise ModelLoadError(f"{name}: {what} folder is empty")



def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(labels, predictions, average="micro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predictions)),
    }


def evaluate(model: PreTrainedModel, dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
             batch_size: int) -> EvalResult:
    """Loss and metrics on ``dataset``; batches of similar length, predictions back in input order."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = np.asarray(dataset["length"])
    order = np.argsort(-lengths, kind="stable")  # longest first: an OOM shows up on the first batch
    logits = np.empty((len(dataset), model.config.num_labels), dtype=np.float32)
    labels = np.asarray(dataset["labels"])
    inputs = [c for c in dataset.column_names if c not in ("labels", "length")]
    loss_sum = 0.0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            rows = dataset[idx.tolist()]
            batch = tokenizer.pad({k: rows[k] for k in inputs}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch).logits.float()
            target = torch.as_tensor(labels[idx], device=device)
            loss_sum += float(torch.nn.functional.cross_entropy(out, target, reduction="sum"))
            logits[idx] = out.cpu().numpy()
    model.train(was_training)
    predictions = logits.argmax(axis=-1)
    metrics = classification_metrics(labels, predictions)
    metrics["loss"] = loss_sum / max(1, len(dataset))
    return EvalResult(metrics, predictions)


def _training_args(hp: HParams, settings: TrainSettings, seed: int, output_dir: str, device: str,
                   log_steps: int) -> Any:
    import torch
    from transformers import TrainingArguments

    on_cuda = device.startswith("cuda")
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=hp.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps if settings.max_steps is not None else -1,
        seed=seed,
        data_seed=seed,
        train_sampling_strategy="group_by_length",
        optim="adamw_torch_fused",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=log_steps,
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=on_cuda and torch.cuda.is_bf16_supported(),
        dataloader_pin_memory=on_cuda,
        remove_unused_columns=True,
    )


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
    output_dir: str | None = None,
    on_epoch: EpochHook | None = None,
    on_step: StepHook | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> FineTuneResult:
    """Fine-tune ``model_name`` on ``train`` and evaluate on ``dev``.

    ``on_epoch(epoch, dev_metrics)`` runs after every epoch with dev metrics (for pruning and curves);
    it may raise to stop training. ``on_step(done, total)`` runs after every optimizer step (progress,
    Ctrl-C); it may raise too. ``output_dir`` only matters for replicas (``trainer.save_*``):
    nothing is written there during training.
    """
    from transformers import DataCollatorWithPadding, Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback

    device = resolve_device(settings)
    set_seed(seed)  # before the model: the new classification head is initialised from this seed
    model = load_model(model_name, id2label)
    scratch = None
    if output_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="seqclf-trial-")
        output_dir = scratch.name
    steps_per_epoch = max(1, -(-len(train) // hp.batch_size))
    all_callbacks = list(callbacks or [])
    history: list[dict[str, float]] = []
    if on_step is not None:
        all_callbacks.append(_StepHookCallback(on_step))
    epoch_eval = None
    if on_epoch is not None:
        epoch_eval = _EpochEval(dev, tokenizer, settings.eval_batch_size, on_epoch, history)
        all_callbacks.append(epoch_eval)
    trainer = Trainer(
        model=model,
        args=_training_args(hp, settings, seed, output_dir, device, max(1, min(50, steps_per_epoch // 4))),
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if device != "cpu" else None),
        callbacks=all_callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    try:
        output = trainer.train()
    finally:
        if scratch is not None:
            scratch.cleanup()
    train_metrics = {k: float(v) for k, v in output.metrics.items()}
    if epoch_eval is not None and epoch_eval.last_step == trainer.state.global_step:
        dev_result, eval_seconds = epoch_eval.last, epoch_eval.seconds  # the last epoch's eval is the final one
    else:
        started = time.perf_counter()
        dev_result = evaluate(trainer.model, dev, tokenizer, settings.eval_batch_size)
        eval_seconds = time.perf_counter() - started + (epoch_eval.seconds if epoch_eval else 0.0)
    assert dev_result is not None
    return FineTuneResult(trainer.model, trainer, train_metrics, dev_result, history, eval_seconds)


class _EpochEval(TrainerCallback):
    """Evaluates dev at each epoch end and hands the metrics to ``hook``.

    Keeps the last result and the step it was taken at: after the final epoch it is the final dev result.
    """

    def __init__(self, dev: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int,
                 hook: EpochHook, history: list[dict[str, float]]) -> None:
        self.dev, self.tokenizer, self.batch_size, self.hook, self.history = dev, tokenizer, batch_size, hook, history
        self.last: EvalResult | None = None
        self.last_step = -1
        self.seconds = 0.0

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                     **kwargs: Any) -> None:
        assert model is not None
        started = time.perf_counter()
        self.last, self.last_step = evaluate(model, self.dev, self.tokenizer, self.batch_size), state.global_step
        self.seconds += time.perf_counter() - started
        metrics = self.last.metrics
        epoch = math.ceil((state.epoch or 0) - 1e-6)  # a last, partial epoch (with --max-steps) counts as one
        self.history.append({"epoch": float(epoch), **metrics})
        self.hook(epoch, metrics)


class _StepHookCallback(TrainerCallback):
    """Calls ``hook(done, total)`` after every optimizer step."""

    def __init__(self, hook: StepHook) -> None:
        self.hook = hook

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.hook(state.global_step, state.max_steps)
