"""Load a pretrained model and fine-tune it for one (batch size, learning rate, seed).

No Optuna and no click here: ``fine_tune`` takes plain values and returns metrics, so the same code
trains tuning trials and final replicas. Training is a plain PyTorch loop with the HF Trainer's default
recipe but none of its per-step machinery (bench/train_throughput.py: the Trainer ran at 0.85 of a
hand-written loop); evaluation is an inference loop that keeps predictions in input order and uses a
large batch. Nothing is written to disk here.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .batches import TensorSplit, collate, length_grouped_batches
from .config import HParams, TrainSettings
from .errors import ConfigError, ModelLoadError, first_line

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EpochHook = Callable[[int, dict[str, float]], None]
StepHook = Callable[[int, int], None]  # (steps done, steps in all)
LogHook = Callable[[dict[str, float]], None]  # {"loss", "learning_rate", "grad_norm", "step", "epoch"}


@dataclass(frozen=True)
class EvalResult:
    """Metrics on one split and the predicted label ids, in the split's order."""

    metrics: dict[str, float]
    predictions: np.ndarray


@dataclass
class FineTuneResult:
    model: PreTrainedModel
    train_metrics: dict[str, float]  # train_runtime (s, training only), train_loss, epoch, global_step, ...
    dev: EvalResult
    history: list[dict[str, float]] = field(default_factory=list)  # dev metrics after each epoch
    eval_seconds: float = 0.0  # dev evaluation, every epoch and final, in seconds
    log_history: list[dict[str, float]] = field(default_factory=list)  # training loss every few steps


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
    keep_freed_memory()


KEEP_FREED_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse the memory a training step frees instead of returning it to the OS.

    Every step frees and allocates again the same large buffers (MiniLM's embedding gradient alone is
    47 MB). glibc serves blocks over 32 MB with a fresh ``mmap`` and unmaps them when freed, so each step
    page-faults them in again: about a sixth of a batch-16 step on a 2-core Xeon (``bench/allocator.py``).
    Raising the mmap and trim thresholds to 256 MB (what ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` do; PyTorch's CPU tuning guide swaps in jemalloc for the same reason) keeps
    them in the heap. The process holds at most that much freed memory. False where malloc is not glibc's.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, KEEP_FREED_BYTES) and mallopt(m_trim_threshold, KEEP_FREED_BYTES))


def check_device(settings: TrainSettings) -> None:
    import torch

    device = settings.device or ""
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} visible CUDA GPU(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: Apple's MPS backend is not available here")
    gpu = device.startswith("cuda") or (not device and torch.cuda.is_available())
    if settings.precision == "bf16" and gpu and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16: this GPU has no bf16 support; use fp16 or fp32")


def assign_device(settings: TrainSettings, worker: int) -> TrainSettings:
    """Spread workers over the visible GPUs (worker i -> cuda:i mod n) unless a device was chosen."""
    import torch

    if settings.device is None and torch.cuda.device_count() > 1:
        return replace(settings, device=f"cuda:{worker % torch.cuda.device_count()}")
    return settings


def resolve_device(settings: TrainSettings) -> str:
    """The device to train on (``cuda`` when a GPU is visible and none was chosen).

    ``cuda:N`` also makes GPU N the current device, so bf16 checks and autocast look at the right GPU."""
    import torch

    device = settings.device
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda:"):
        torch.cuda.set_device(int(device.split(":", 1)[1]))
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


def own_weights(model: PreTrainedModel) -> PreTrainedModel:
    """Copy the weights of a model on the CPU out of the checkpoint file into memory of the model's own.

    transformers maps a safetensors checkpoint into memory and the CPU model's parameters point into
    that copy-on-write mapping, so the first optimizer step of every trial faulted the whole model in
    page by page: 0.34 s of a 0.36 s first step for all-MiniLM-L6-v2 (0.015 s later), against about
    0.03 s for this copy (``bench/first_step.py``). The copy lives in one anonymous memory map per model,
    not in malloc's heap, so it goes back to the system with the model instead of leaving a model-sized
    hole in the heap after every trial (``bench/memory_trials.py``). On a GPU ``.to(device)`` has already
    copied the weights.
    """
    import mmap

    import torch

    params = [p for p in model.parameters() if p.device.type == "cpu"]  # tied parameters come once
    spans = [-(-p.numel() * p.element_size() // 64) * 64 for p in params]  # 64-byte aligned
    if not params:
        return model
    arena = torch.frombuffer(mmap.mmap(-1, sum(spans)), dtype=torch.uint8)  # unmapped with its last tensor
    offset = 0
    with torch.no_grad():
        for param, span in zip(params, spans):
            size = param.numel() * param.element_size()
            copy = arena[offset:offset + size].view(param.dtype).view(param.shape)
            copy.copy_(param.data)
            param.data = copy
            offset += span
    return model


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
             batch_size: int, precision: str = "fp32") -> EvalResult:
    """Loss and metrics on ``dataset``; batches of similar length, predictions back in input order."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    split = TensorSplit.from_dataset(dataset)
    order = np.argsort(-split.lengths, kind="stable")  # longest first: an OOM shows up on the first batch
    logits = np.empty((len(split), model.config.num_labels), dtype=np.float32)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loss_sum = 0.0
    dtype = autocast_dtype(precision)
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate(split, idx, pad_id).items()}
            target = batch.pop("labels")
            with autocast:
                out = model(**batch).logits.float()
            loss_sum += float(torch.nn.functional.cross_entropy(out, target, reduction="sum"))
            logits[idx] = out.cpu().numpy()
    model.train(was_training)
    predictions = logits.argmax(axis=-1)
    metrics = classification_metrics(split.labels, predictions)
    metrics["loss"] = loss_sum / max(1, len(dataset))
    return EvalResult(metrics, predictions)


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
    on_epoch: EpochHook | None = None,
    on_step: StepHook | None = None,
    on_log: LogHook | None = None,
) -> FineTuneResult:
    """Fine-tune ``model_name`` on ``train`` and evaluate on ``dev``. Nothing is written to disk.

    The recipe of the HF Trainer's defaults, without its machinery: AdamW (fused where torch has it,
    no weight decay), linear decay to 0 without warm-up, gradient clipping at norm 1.0, length-grouped
    batches with per-batch padding, mixed precision as ``settings.precision`` says (``autocast_dtype``;
    fp16 with a ``GradScaler``).
    ``on_epoch(epoch, dev_metrics)`` runs after every epoch (pruning, curves) and may raise to stop;
    ``on_step(done, total)`` after every optimizer step (progress, Ctrl-C), and may raise too;
    ``on_log(record)`` gets the training loss, learning rate and gradient norm every few steps.
    """
    import torch
    from transformers import set_seed

    device = torch.device(resolve_device(settings))
    set_seed(seed)  # before the model: the new classification head is initialised from this seed
    model = own_weights(load_model(model_name, id2label).to(device))
    split = TensorSplit.from_dataset(train)
    steps_per_epoch = max(1, -(-len(split) // hp.batch_size))
    total = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(params, hp.learning_rate, device)
    norm_of = GradientNorm(model, params)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, (total - step) / total))
    dtype = autocast_dtype(settings.precision)
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    # fp16 needs loss scaling: small gradients would underflow to 0 (bf16 has fp32's range and needs none)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    multiple = 8 if device.type == "cuda" else 1  # tensor cores like multiples of 8
    log_every = max(1, min(50, steps_per_epoch // 4))
    rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    log_history: list[dict[str, float]] = []
    loss_sum = torch.zeros((), device=device)
    logged_sum, logged_at, step, epoch = 0.0, 0, 0, 0
    dev_result: EvalResult | None = None
    eval_seconds = 0.0
    model.train()
    started = time.perf_counter()
    while step < total:
        epoch += 1
        for rows in length_grouped_batches(split.lengths, hp.batch_size, rng):
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(split, rows, pad_id, multiple).items()}
            with autocast:
                loss = model(**batch).loss
            if scaler is None:
                loss.backward()
                grad_norm = _clip_gradients(params, device, optimizer, total=norm_of(batch["input_ids"]))
                optimizer.step()
            else:  # unscale first so that clipping sees the real norm; the step is skipped on inf/nan
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # GradScaler.step then keeps the fused clipping's grad_scale
                grad_norm = _clip_gradients(params, device, optimizer, total=norm_of(batch["input_ids"]))
                scaler.step(optimizer)
                scaler.update()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
            step += 1
            if step % log_every == 0 or step == total:
                running = float(loss_sum)  # one device sync per log, not per step
                record = {"loss": (running - logged_sum) / (step - logged_at), "learning_rate":
                          schedule.get_last_lr()[0], "grad_norm": float(grad_norm), "step": step,
                          "epoch": round(step / steps_per_epoch, 4)}
                logged_sum, logged_at = running, step
                log_history.append(record)
                if on_log is not None:
                    on_log(record)
            if on_step is not None:
                on_step(step, total)
            if step >= total:
                break
        if on_epoch is not None:  # after every epoch, the last (maybe partial) one included
            begun = time.perf_counter()
            dev_result = evaluate(model, dev, tokenizer, settings.eval_batch_size, settings.precision)
            eval_seconds += time.perf_counter() - begun
            history.append({"epoch": float(epoch), **dev_result.metrics})
            on_epoch(epoch, dev_result.metrics)
    runtime = time.perf_counter() - started - eval_seconds
    train_metrics = {
        "train_runtime": round(runtime, 4), "train_samples_per_second": round(step * hp.batch_size / runtime, 3),
        "train_steps_per_second": round(step / runtime, 3), "train_loss": float(loss_sum) / max(1, step),
        "epoch": round(step / steps_per_epoch, 4), "global_step": float(step),
    }
    if dev_result is None:  # the last epoch's evaluation is the final one when there was one
        begun = time.perf_counter()
        dev_result = evaluate(model, dev, tokenizer, settings.eval_batch_size, settings.precision)
        eval_seconds += time.perf_counter() - begun
    return FineTuneResult(model, train_metrics, dev_result, history, eval_seconds, log_history)


MAX_GRAD_NORM = 1.0


class GradientNorm:
    """The total gradient norm that clipping needs, reading the input embedding's gradient only where it can
    be non-zero.

    A word-embedding gradient is zero except on the rows of the batch's token ids, and it is the largest
    gradient of a small model (47 MB of all-MiniLM-L6-v2's 91 MB): on a CPU, where the norm is a pass over
    memory, reading only those rows halves its cost (``bench/grad_norm.py``). The first call checks the
    shortcut against the full norm and drops it for good where they differ (an embedding matrix that is
    also an output layer, say). On a GPU the full norm is cheap and ``unique`` would wait for the device.
    """

    def __init__(self, model: torch.nn.Module, params: list[torch.nn.Parameter]) -> None:
        import torch

        self.params = params
        embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        weight = getattr(embedding, "weight", None)
        usable = (isinstance(embedding, torch.nn.Embedding) and not embedding.sparse and weight is not None
                  and weight.device.type == "cpu" and any(p is weight for p in params))
        self.embedding: torch.nn.Parameter | None = weight if usable else None
        self.others = [p for p in params if p is not weight]
        self.checked = False

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """The norm of the current gradients; None on a torch without ``get_total_norm`` (< 2.6)."""
        import torch

        get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
        if get_total_norm is None:
            return None
        every = [p.grad for p in self.params if p.grad is not None]
        if self.embedding is None or self.embedding.grad is None:
            return get_total_norm(every, foreach=True)
        rows = self.embedding.grad.index_select(0, torch.unique(input_ids))
        total = get_total_norm([*(p.grad for p in self.others if p.grad is not None), rows], foreach=True)
        if not self.checked:
            full = get_total_norm(every, foreach=True)
            if not torch.isfinite(full):  # an fp16 step that overflowed (and is skipped) proves nothing
                return full
            self.checked = True
            if not torch.allclose(total, full, rtol=1e-5, atol=1e-12):
                self.embedding = None
                return full
        return total


def _clip_gradients(params: list[torch.nn.Parameter], device: torch.device,
                    optimizer: torch.optim.Optimizer | None = None,
                    total: torch.Tensor | None = None) -> torch.Tensor:
    """Scale gradients down to norm ``MAX_GRAD_NORM``; return the norm before clipping (``total`` when given).

    Same result as ``clip_grad_norm_`` (the HF Trainer's), with fewer passes over the gradients. With
    torch's fused AdamW the scaling is left to the optimizer's kernel: ``grad_scale`` (the hook that
    ``GradScaler`` uses) divides every gradient by max(1, norm / max) inside the update, so clipping costs
    one read of the gradients instead of three. Otherwise: fused norms, and on a CPU no rescaling pass when
    the norm is already small enough (on a GPU it always rescales rather than wait for the norm).
    """
    import torch

    utils = torch.nn.utils
    if not hasattr(utils, "get_total_norm"):  # torch < 2.6
        return utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    if total is None:
        total = utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True)
    if optimizer is not None and optimizer.defaults.get("fused"):
        optimizer.grad_scale = torch.clamp((total + 1e-6) / MAX_GRAD_NORM, min=1.0)  # type: ignore[attr-defined]
    elif device.type != "cpu" or total > MAX_GRAD_NORM:
        utils.clip_grads_with_norm_(params, MAX_GRAD_NORM, total, foreach=True)
    return total


def _adamw(params: list[torch.nn.Parameter], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """torch's AdamW with the HF defaults (no weight decay); fused kernels where this torch has them."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype to autocast to for ``--precision``; None for plain fp32."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
