"""LoRA through ``peft`` (``--lora``): low-rank adapters on the attention projections, the classification head
trained in full, and what a LoRA model is saved as.

- Targets: ``--lora-targets``, or peft's defaults for the architecture (``query``/``value`` for BERT and
  RoBERTa, ``query_proj``/``value_proj`` for DeBERTa-v2/v3, ``q_proj``/``v_proj`` for Llama and Qwen2, ...);
  a model whose type peft has no default for needs ``--lora-targets``. Checked on the model's structure built
  on the meta device (no weights) before anything trains.
- The head: peft's sequence-classification task trains ``classifier``/``score`` in full and saves it with the
  adapter (the heads lost on reload of peft#310/#876/#1070 were models saved without it).
- Kept weights (a trial's, for ``train`` to reuse): the adapter and head only (``save_weights``), a few MB
  where the merged model would be the whole backbone.
- A replica: the adapter (and head) in ``adapter/`` beside the model merged into plain weights, a Hugging Face
  folder ``from_pretrained`` and ``pipeline()`` load without peft.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_seqclf.errors import ConfigError, ModelLoadError, first_line
from optuna_seqclf.settings import LoraSettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ADAPTER_DIR = "adapter"  # a replica's sub-folder with the LoRA adapter and the head (peft's format)
INSTALL = "pip install 'optuna-seqclf[lora]'"


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(f"--lora needs the peft package, which is not installed: {INSTALL}", "lora") from None
    return peft


def is_lora(model: Any) -> bool:
    """A peft model (which only exists once peft was imported: nothing is imported to say no)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def _config(lora: LoraSettings, targets: list[str] | None) -> Any:
    peft = _peft()
    return peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=lora.rank, lora_alpha=lora.alpha,
                           lora_dropout=lora.dropout, target_modules=targets)


def check_lora(name: str, lora: LoraSettings, num_labels: int) -> None:
    """Before anything trains: peft is installed, and the targets (given, or peft's default for the model's
    type) name linear layers of ``name``'s model (its structure built without weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    _peft()
    config = AutoConfig.from_pretrained(name, num_labels=num_labels)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    targets = lora.targets or _default_targets(config.model_type)
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in targets if t not in linear]
    if missing:
        raise ConfigError(f"--lora-targets {','.join(missing)}: no such linear layer in {name} ({config.model_type}; "
                          f"its linear layers: {', '.join(sorted(linear))})", "lora_targets")


def _default_targets(model_type: str) -> list[str]:
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    targets = DEFAULTS.get(model_type)
    if not targets:
        raise ConfigError(f"--lora: peft has no default target modules for model type {model_type!r}; name the "
                          "attention projections with --lora-targets (e.g. query,value)", "lora_targets")
    return list(targets)


def with_lora(model: PreTrainedModel, lora: LoraSettings) -> PreTrainedModel:
    """``model`` with LoRA adapters on its targets; only they and the head train."""
    targets = list(lora.targets) if lora.targets else _default_targets(model.config.model_type)
    wrapped: PreTrainedModel = _peft().get_peft_model(model, _config(lora, targets))
    return wrapped


def save_adapter(model: PreTrainedModel, folder: Path) -> Path:
    """The adapter and the head of a LoRA model into ``folder`` (``adapter_model.safetensors``)."""
    model.save_pretrained(folder)
    return folder / "adapter_model.safetensors"


def load_adapter(model: PreTrainedModel, lora: LoraSettings, file: Path) -> PreTrainedModel:
    """``model`` with LoRA adapters whose weights (and the head's) are ``file``'s (``save_adapter``); a file that
    does not fit is a ModelLoadError."""
    from safetensors.torch import load_file

    wrapped = with_lora(model, lora)
    try:
        result = _peft().set_peft_model_state_dict(wrapped, load_file(str(file)))
    except Exception as exc:
        raise ModelLoadError(f"{file}: the adapter does not fit the model ({first_line(exc)})") from None
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ModelLoadError(f"{file}: the adapter does not fit the model (unexpected {unexpected[:3]})")
    return wrapped


def merged_model(model: PreTrainedModel) -> PreTrainedModel:
    """A LoRA model's adapters folded into its weights: a plain model (the head as trained); others as given."""
    if not is_lora(model):
        return model
    plain: PreTrainedModel = model.merge_and_unload()  # type: ignore[operator]
    return plain
