"""Use trained models: labels and probabilities from one model, or from the seed ensemble of a replicas folder.

A ``Predictor`` is one Hugging Face sequence-classification folder (a replica or any other), or the
replicas folder ``train`` writes, whose replicas' softmax probabilities are averaged (averaging seeds is
the most reliable fix known for fine-tuning instability). Texts are tokenised once, sorted by length and
padded per batch, and every model runs over them in inference mode; no per-example Python work.
Only safetensors weights are loaded, and never a model's own code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optuna_seqclf.data.batches import TensorSplit
from optuna_seqclf.errors import ModelLoadError, first_line
from optuna_seqclf.settings import MachineSettings
from optuna_seqclf.training.loop import logits_by_batch, pad_id_of
from optuna_seqclf.training.metrics import metrics_from_confusion
from optuna_seqclf.training.model import load_tokenizer, resolve_device
from optuna_seqclf.training.outputs import task_of
from optuna_seqclf.training.replica_folder import (
    SUMMARY_FILE,
    check_complete,
    ensemble_seeds,
    replica_folders,
    seeds_text,
)

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")
HOLD_ALL_BYTES = 2 << 30  # an ensemble whose weights fit in this stays loaded; a larger one loads in turn


@dataclass(frozen=True)
class Prediction:
    label: str  # the predicted label's name (the model's id2label)
    score: float  # its probability
    probabilities: dict[str, float]  # every label's


@dataclass(frozen=True)
class Evaluation:
    """Scores against known labels; examples whose label the model does not know are left out and counted."""

    metrics: dict[str, float]  # f1 (macro), micro_f1, accuracy, mcc
    examples: int
    unknown: int
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: the true label, columns: the predicted one, in ``labels`` order

    @classmethod
    def of(cls, confusion: np.ndarray, unknown: int, labels: tuple[str, ...]) -> Evaluation:
        matrix = np.asarray(confusion, dtype=np.int64)
        return cls(metrics_from_confusion(matrix), int(matrix.sum()), unknown, labels,
                   tuple(tuple(int(c) for c in row) for row in matrix))


class Predictor:
    """One model, or several whose probabilities are averaged, sharing a tokenizer and a label set."""

    def __init__(self, folders: Sequence[Path], seeds: tuple[int, ...] | None = None,
                 machine: MachineSettings | None = None, max_seq_length: int | None = None) -> None:
        self.folders = [Path(f) for f in folders]
        self.seeds = seeds
        self.machine = machine or MachineSettings()
        self.device = resolve_device(self.machine)
        configs = [_classifier_config(folder) for folder in self.folders]
        labels = [_label_names(c) for c in configs]
        if any(other != labels[0] for other in labels):
            raise ModelLoadError(f"{self.folders[0].parent}: the replicas do not share one label set")
        self.labels: tuple[str, ...] = labels[0]
        # what the outputs are (``training.outputs``): softmax over classes, a sigmoid per label, or the score
        self.task = task_of(configs[0])
        self.tokenizer: PreTrainedTokenizerBase = load_tokenizer(str(self.folders[0]))
        self.max_seq_length = max_seq_length or _trained_length(self.folders[0], self.tokenizer, configs[0])
        weights = sum(_weights_bytes(folder) for folder in self.folders)
        self._held: list[PreTrainedModel] | None = None if weights > HOLD_ALL_BYTES else []

    @classmethod
    def from_pretrained(cls, path: str | Path, *, replica: int | None = None, machine: MachineSettings | None = None,
                        max_seq_length: int | None = None) -> Predictor:
        """A replicas folder (its seed ensemble, or the replica of seed ``replica``), a replica, or any HF
        sequence-classification folder."""
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"{path}: {'is a file' if path.exists() else 'not found'}; expected a model folder "
                                 f"or a replicas folder written by `optuna-seqclf train`")
        if not (path / SUMMARY_FILE).is_file():
            if replica is not None:
                raise ModelLoadError(f"{path}: --replica needs a replicas folder (with {SUMMARY_FILE})")
            return cls([path], None, machine, max_seq_length)
        replicas = replica_folders(path)
        if replica is not None:
            if replica not in replicas:
                raise ModelLoadError(f"{path}: no replica of seed {replica} (seeds: {seeds_text(replicas)})")
            replicas = {replica: replicas[replica]}
        else:  # the ensemble `train` scored: failed runs left out while any other exists
            members = ensemble_seeds(path)
            replicas = {seed: folder for seed, folder in replicas.items() if members is None or seed in members}
        check_complete(path, replicas, replica is None)
        return cls(list(replicas.values()), tuple(replicas), machine, max_seq_length)

    @property
    def kind(self) -> str:
        """``ensemble of seeds 1,2,3``, ``replica of seed 2`` or the model folder, for messages."""
        if self.seeds is None:
            return str(self.folders[0])
        if len(self.seeds) == 1:
            return f"replica of seed {self.seeds[0]}"
        return f"ensemble of seeds {seeds_text(self.seeds)}"

    def predict_proba(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                      batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, one row per text in input order: the models' softmax, averaged."""
        probabilities = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if not texts:
            return probabilities.astype(np.float32)
        encoded = self.tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                                 truncation=True, max_length=self.max_seq_length, padding=False)
        split = TensorSplit.from_encoding({k: encoded[k] for k in encoded})
        for model in self._models():
            probabilities += self._run(model, split, batch_size or self.machine.eval_batch_size)
        return (probabilities / len(self.folders)).astype(np.float32)

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                batch_size: int | None = None) -> list[Prediction]:
        probabilities = self.predict_proba(texts, text_pairs, batch_size)
        best = probabilities.argmax(axis=1)
        return [Prediction(self.labels[b], float(row[b]), dict(zip(self.labels, map(float, row))))
                for b, row in zip(best, probabilities)]

    def evaluate(self, texts: Sequence[str], labels: Sequence[str], text_pairs: Sequence[str] | None = None,
                 batch_size: int | None = None) -> Evaluation:
        """Macro-F1, micro-F1, accuracy and the confusion matrix against ``labels`` (names)."""
        return self.score(self.predict_proba(texts, text_pairs, batch_size).argmax(axis=1), labels)

    def score(self, predicted: np.ndarray, labels: Sequence[str]) -> Evaluation:
        """``Evaluation`` of predicted label ids against label names; names the model lacks are counted apart."""
        index = {name: i for i, name in enumerate(self.labels)}
        matrix = np.zeros((len(self.labels),) * 2, dtype=np.int64)
        unknown = 0
        for name, guess in zip(labels, np.asarray(predicted).tolist()):
            if name in index:
                matrix[index[name], guess] += 1
            else:
                unknown += 1
        return Evaluation.of(matrix, unknown, self.labels)

    def _models(self) -> list[PreTrainedModel]:
        """The models, loaded once and kept when they fit in ``HOLD_ALL_BYTES``, else loaded in turn."""
        if self._held is None:
            return [_load_classifier(folder, self.device) for folder in self.folders]
        if not self._held:
            self._held.extend(_load_classifier(folder, self.device) for folder in self.folders)
        return self._held

    def _run(self, model: PreTrainedModel, split: TensorSplit, batch_size: int) -> np.ndarray:
        """One model's softmax over ``split``, in input order."""
        import torch

        out = np.empty((len(split), len(self.labels)), dtype=np.float32)
        for rows, logits, _ in logits_by_batch(model, split, pad_id_of(self.tokenizer), batch_size,
                                               self.machine.precision):
            out[rows] = (torch.sigmoid(logits) if self.task == "multi-label" else logits if self.task == "regression"
                         else torch.softmax(logits, dim=-1)).cpu().numpy()
        return out


def _label_names(config: PretrainedConfig) -> tuple[str, ...]:
    """A classifier's class names, by label id."""
    id2label: dict[Any, str] = dict(config.id2label or {})
    return tuple(str(id2label[i]) for i in range(int(config.num_labels or len(id2label))))


def _classifier_config(folder: Path) -> PretrainedConfig:
    """The folder's config, checked: a sequence classifier with safetensors weights (never pickled ones)."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder}: no config.json; expected a Hugging Face model folder")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except Exception as exc:  # transformers raises ValueError, KeyError, OSError... for a bad config
        raise ModelLoadError(f"{folder}: cannot read config.json ({first_line(exc)})") from None
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(f"{folder}: not a sequence classifier "
                             f"(architectures: {', '.join(architectures) or 'none'})")
    if not any((folder / name).is_file() for name in WEIGHTS_FILES):
        raise ModelLoadError(f"{folder}: no model.safetensors; only safetensors weights are loaded (pickled "
                             "pytorch_model.bin files can run code when loaded)")
    return config


def _weights_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def _trained_length(folder: Path, tokenizer: PreTrainedTokenizerBase, config: object) -> int:
    """The max length the model was trained with (a replica records it), else what the model can take."""
    try:
        return int(json.loads((folder / "training_args.json").read_text(encoding="utf-8"))["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        limits = [getattr(config, "max_position_embeddings", 512), getattr(tokenizer, "model_max_length", 512), 512]
        return int(min(x for x in limits if isinstance(x, int) and x > 0))


def _load_classifier(folder: Path, device: str) -> PreTrainedModel:
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True,
                                                                   trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(f"{folder}: cannot load the model ({first_line(exc)})") from None
    return model.to(device).eval()
