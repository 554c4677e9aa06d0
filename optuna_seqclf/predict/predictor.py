"""Use trained models: labels and probabilities from one model, or from the seed ensemble of a replicas folder.

A ``Predictor`` is one Hugging Face sequence-classification folder (a replica or any other), or the
replicas folder ``train`` writes, whose replicas' probabilities are averaged (averaging seeds is the most
reliable fix known for fine-tuning instability). What the outputs mean follows the model's task (its
``problem_type``, ``training.outputs``): the softmax's most probable class; the labels whose sigmoid reaches
their threshold (multi-label: 0.5, or as tuned on dev and kept with the model); the score (regression, the
mean of the replicas' scores). Texts are tokenised once, sorted by length and
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
from optuna_seqclf.data.corpus import encode_labels
from optuna_seqclf.errors import ModelLoadError, first_line
from optuna_seqclf.settings import MachineSettings
from optuna_seqclf.training.loop import logits_by_batch, pad_id_of
from optuna_seqclf.training.metrics import metrics_from_confusion
from optuna_seqclf.training.model import load_tokenizer, resolve_device
from optuna_seqclf.training.outputs import decide_from_probabilities, task_metrics, task_of
from optuna_seqclf.training.replica_folder import (
    SUMMARY_FILE,
    check_complete,
    ensemble_seeds,
    ensemble_thresholds,
    replica_folders,
    seeds_text,
)

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from optuna_seqclf.data.records import Label

WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")
HOLD_ALL_BYTES = 2 << 30  # an ensemble whose weights fit in this stays loaded; a larger one loads in turn


# what ``predict`` prints of an evaluation, per task: (metrics key, name)
EVALUATION_METRICS = {
    "single-label": (("f1", "macro-F1"), ("micro_f1", "micro-F1"), ("accuracy", "accuracy")),
    "multi-label": (("micro_f1", "micro-F1"), ("f1", "macro-F1"), ("samples_f1", "samples-F1"),
                    ("subset_accuracy", "subset accuracy")),
    "regression": (("pearson", "Pearson"), ("spearman", "Spearman"), ("mse", "MSE"), ("mae", "MAE")),
}


@dataclass(frozen=True)
class Prediction:
    """One text's prediction. ``label``: the class (single-label); the labels predicted, joined by commas
    (multi-label, empty for none); the score as text (regression)."""

    label: str
    score: float  # the class's probability; the highest label probability (multi-label); the score itself
    probabilities: dict[str, float]  # every label's (nothing for regression)
    labels: tuple[str, ...] = ()  # the labels predicted (multi-label; the one class for single-label)


@dataclass(frozen=True)
class Evaluation:
    """Scores against known labels; examples whose label the model does not know are left out and counted."""

    metrics: dict[str, float]  # the task's (``training.outputs``): f1 (macro), micro_f1, accuracy, pearson, ...
    examples: int
    unknown: int
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # single-label: rows the true label, columns the predicted one
    task: str = "single-label"

    @classmethod
    def of(cls, confusion: np.ndarray, unknown: int, labels: tuple[str, ...]) -> Evaluation:
        matrix = np.asarray(confusion, dtype=np.int64)
        return cls(metrics_from_confusion(matrix), int(matrix.sum()), unknown, labels,
                   tuple(tuple(int(c) for c in row) for row in matrix))


class Tally:
    """A predictor's decisions against known labels, chunk by chunk: a confusion matrix for single-label (its
    memory does not grow), the 0/1 rows or scores for the other tasks (what their metrics need)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.index = {name: i for i, name in enumerate(predictor.labels)}
        self.confusion = np.zeros((len(predictor.labels),) * 2, dtype=np.int64)
        self.truth: list[Any] = []
        self.decided: list[Any] = []
        self.unknown = 0

    def add(self, probabilities: np.ndarray, labels: Sequence[Label]) -> None:
        decided = self.predictor.decide(probabilities)
        task = self.predictor.task
        for label, guess in zip(labels, decided):
            if task == "regression":
                self.truth.append(float(label))  # type: ignore[arg-type]
                self.decided.append(float(guess))
                continue
            names = tuple(label) if isinstance(label, tuple) else (str(label),)
            if any(name not in self.index for name in names):
                self.unknown += 1
            elif task == "multi-label":
                self.truth.extend(encode_labels((names,), task, self.index))  # the 0/1 row the model's loss takes
                self.decided.append(guess)
            else:
                self.confusion[self.index[names[0]], int(guess)] += 1

    def evaluation(self) -> Evaluation:
        labels, task = self.predictor.labels, self.predictor.task
        if task == "single-label":
            return Evaluation.of(self.confusion, self.unknown, labels)
        metrics = task_metrics(task, np.asarray(self.truth), np.asarray(self.decided)) if self.truth else {}
        return Evaluation(metrics, len(self.truth), self.unknown, labels, (), task)


class Predictor:
    """One model, or several whose probabilities are averaged, sharing a tokenizer and a label set."""

    def __init__(self, folders: Sequence[Path], seeds: tuple[int, ...] | None = None,
                 machine: MachineSettings | None = None, max_seq_length: int | None = None,
                 thresholds: Sequence[float] | None = None) -> None:
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
        # multi-label: where each label is decided; given (the ensemble's, tuned on its dev), else the models'
        # own (``--thresholds tuned`` keeps them in config.json; several models: their mean), else 0.5
        own = [getattr(c, "thresholds", None) for c in configs]
        if thresholds is None and all(t is not None for t in own):
            thresholds = [float(x) for x in np.mean(np.asarray(own, dtype=np.float64), axis=0)]
        self.thresholds: list[float] | None = None if thresholds is None else [float(t) for t in thresholds]
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
        return cls(list(replicas.values()), tuple(replicas), machine, max_seq_length,
                   ensemble_thresholds(path) if replica is None else None)

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
        """One row per text in input order, the models' outputs averaged: the softmax over the classes, a sigmoid
        per label (multi-label), the score as one column (regression)."""
        probabilities = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if not texts:
            return probabilities.astype(np.float32)
        encoded = self.tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                                 truncation=True, max_length=self.max_seq_length, padding=False)
        split = TensorSplit.from_encoding({k: encoded[k] for k in encoded})
        for model in self._models():
            probabilities += self._run(model, split, batch_size or self.machine.eval_batch_size)
        return (probabilities / len(self.folders)).astype(np.float32)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """``predict_proba``'s rows decided: class ids; 0/1 per label at the thresholds; the scores."""
        return decide_from_probabilities(self.task, probabilities, self.thresholds)

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                batch_size: int | None = None) -> list[Prediction]:
        probabilities = self.predict_proba(texts, text_pairs, batch_size)
        return [self._prediction(row, decided) for row, decided in zip(probabilities, self.decide(probabilities))]

    def _prediction(self, row: np.ndarray, decided: Any) -> Prediction:
        if self.task == "regression":
            return Prediction(f"{float(decided):.6g}", float(decided), {})
        probabilities = dict(zip(self.labels, map(float, row)))
        if self.task == "multi-label":
            names = tuple(name for name, on in zip(self.labels, decided) if on)
            return Prediction(",".join(names), float(row.max()) if len(row) else 0.0, probabilities, names)
        return Prediction(self.labels[int(decided)], float(row[int(decided)]), probabilities,
                          (self.labels[int(decided)],))

    def evaluate(self, texts: Sequence[str], labels: Sequence[Label], text_pairs: Sequence[str] | None = None,
                 batch_size: int | None = None) -> Evaluation:
        """The task's scores against ``labels`` (class names; label-name tuples; numbers), with the confusion
        matrix for single-label; examples with a label the model does not know are left out and counted."""
        tally = Tally(self)
        tally.add(self.predict_proba(texts, text_pairs, batch_size), labels)
        return tally.evaluation()

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
