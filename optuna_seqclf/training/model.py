"""Load a tokenizer and a pretrained model, check they fit, and choose the device. Loading only.

No training here (``train``), no Optuna, no click. Every failure is a one-line ``ModelLoadError`` that
names the folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from optuna_seqclf.errors import ConfigError, ModelLoadError, first_line
from optuna_seqclf.settings import PROBLEM_TYPES, LoraSettings, MachineSettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def check_device(machine: MachineSettings) -> None:
    """Refuse, before any training, a device this machine lacks or a precision its GPU cannot do."""
    import torch

    device = machine.device or ""
    if device.startswith("cuda"):
        index = cuda_index(device) or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {device}: this machine has {torch.cuda.device_count()} visible CUDA GPU(s)",
                              "device")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps: Apple's MPS backend is not available here", "device")
    gpu = device.startswith("cuda") or (not device and torch.cuda.is_available())
    if machine.precision == "bf16" and gpu:
        with on_device(resolve_device(machine)):  # is_bf16_supported asks the current GPU
            if not torch.cuda.is_bf16_supported():
                raise ConfigError("precision bf16: this GPU has no bf16 support; use fp16 or fp32", "precision")


def assign_device(machine: MachineSettings, worker: int) -> MachineSettings:
    """Spread workers over the visible GPUs (worker i -> cuda:i mod n) unless a device was chosen."""
    import torch

    if machine.device is None and torch.cuda.device_count() > 1:
        return replace(machine, device=f"cuda:{worker % torch.cuda.device_count()}")
    return machine


def resolve_device(machine: MachineSettings) -> str:
    """The device to train on: ``machine.device``, else ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if machine.device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return machine.device


def cuda_index(device: str) -> int | None:
    """N of ``cuda:N``; None for any other device."""
    return int(device.split(":", 1)[1]) if device.startswith("cuda:") else None


@contextlib.contextmanager
def on_device(device: str) -> Iterator[None]:
    """Make GPU N the current CUDA device inside the block for ``cuda:N`` (autocast, bf16 checks and
    kernels of GPU N), and restore the caller's current device after it. Nothing for other devices."""
    index = cuda_index(device)
    if index is None:
        yield
        return
    import torch

    with torch.cuda.device(index):
        yield


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


def load_model(name: str, id2label: dict[int, str], task: str = "single-label") -> PreTrainedModel:
    """A sequence classifier from ``name`` with a fresh head for our labels (seed first for the head), its
    ``problem_type`` set for ``task`` (the loss: cross-entropy, BCE per label, MSE on the one output)."""
    from transformers import AutoModelForSequenceClassification

    _check_local_path(name, "model")
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            name,
            problem_type=PROBLEM_TYPES[task],
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


def trained_on(machine: MachineSettings) -> dict[str, object]:
    """The machine settings a model was trained under: floating-point sums, and so the weights to the last
    bit, differ across devices, precisions, thread counts and micro-batches (None: the whole batch at once)."""
    import torch

    return {"device": resolve_device(machine), "precision": machine.precision, "threads": torch.get_num_threads(),
            "micro_batch_size": machine.micro_batch_size, "torch": torch.__version__}


def save_weights(model: PreTrainedModel, folder: Path) -> Path:
    """The model's weights in one safetensors file in ``folder`` (``save_pretrained``'s, which writes tied
    weights once and copes with ``own_weights``' shared arena); a LoRA model's adapter and head only."""
    from optuna_seqclf.training.lora import is_lora, save_adapter

    if is_lora(model):
        return save_adapter(model, folder)
    model.save_pretrained(folder, max_shard_size="100000GB")  # one file, whatever the model's size
    return folder / "model.safetensors"


def load_weights(name: str, id2label: dict[int, str], file: Path, task: str = "single-label",
                 lora: LoraSettings | None = None) -> PreTrainedModel:
    """``name``'s model with our labels' head, its every weight then replaced by ``file``'s (``save_weights``);
    a file whose tensors do not fit the model exactly (a weight left out is allowed only when it is tied to
    one the file has) is a ModelLoadError. With ``lora``, ``file`` is the adapter and head of a LoRA model."""
    from safetensors.torch import load_file

    model = load_model(name, id2label, task)
    if lora is not None:
        from optuna_seqclf.training.lora import load_adapter

        return load_adapter(model, lora, file)
    try:
        state = load_file(str(file))
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as exc:  # a shape that differs, a corrupt header
        raise ModelLoadError(f"{file}: the weights do not fit {name} ({first_line(exc)})") from None
    own = model.state_dict()
    loaded = {own[k].data_ptr() for k in state if k in own}
    untied = [k for k in missing if own[k].data_ptr() not in loaded]
    if unexpected or untied:
        raise ModelLoadError(f"{file}: the weights do not fit {name} (missing {untied[:3]}, unexpected "
                             f"{unexpected[:3]})")
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
