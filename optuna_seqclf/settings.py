"""Frozen, validated settings: what to read, what to train, what to search.

Every value object here checks itself on construction, so the rest of the code can trust it and a
mistake is reported before any file is opened or any model is trained.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna_seqclf.errors import ConfigError

DEFAULT_BATCH_SIZES: tuple[int, ...] = (8, 16, 32)
# The reference tutorial's twelve learning rates, in its order.
DEFAULT_LEARNING_RATES: tuple[float, ...] = (
    1e-3, 1e-4, 1e-5, 1e-6, 3e-3, 3e-4, 3e-5, 3e-6, 5e-3, 5e-4, 5e-5, 5e-6,
)
# --lora without --learning-rates: the same grid ten times higher. An adapter trains few weights from a zero
# start (B = 0), and LoRA's own tuned rates sit about 10x above full fine-tuning's (Hu et al. 2021, RoBERTa-base
# on GLUE: 4e-4-5e-4 vs 1e-5-3e-5); bench/RESULTS.md "Issue 26: LoRA" measured MiniLM on SST-2 2k.
DEFAULT_LORA_LEARNING_RATES: tuple[float, ...] = tuple(round(lr * 10, 12) for lr in DEFAULT_LEARNING_RATES)
DEFAULT_SEEDS: tuple[int, ...] = (1, 2, 3, 4, 5)
# The default job (issue 24; docs/choosing.md, bench/RESULTS.md "Issue 24"): the median pruner, then the top 3
# complete points trained again with 1 more seed each, chosen by their mean dev score; their runs become
# replicas. The reference's job is `--pruner none --confirm-top 0` (examples/reference.toml).
DEFAULT_CONFIRM_TOP = 3
DEFAULT_CONFIRM_SEEDS = 1
SPLITS: tuple[str, ...] = ("train", "dev", "test")
PRUNERS: tuple[str, ...] = ("none", "median", "halving", "hyperband")
DEFAULT_PRUNER = "median"  # "none": the reference's, every point trained for all its epochs
# fp32 by default: on an H200, bf16 autocast trained MiniLM and BERT-base on SST-2 at 0.69-0.79x fp32's speed
# (bench/gpu.py): short sentences leave a step bound by kernel launches, and autocast adds cast kernels.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
# How a training epoch is cut into batches (data/batches.py says what each does)
BATCHINGS: tuple[str, ...] = ("random", "grouped", "grouped-shuffled")
DEFAULT_BATCHING = "grouped-shuffled"
# --batching auto (the default): the task's. Multi-label trains on random batches: on a GoEmotions slice, batches of
# similar lengths gave a higher dev BCE loss on every seed and one seed 10 points below the HF Trainer's test
# micro-F1, random batches the Trainer's scores or better (bench/RESULTS.md "Issue 25"); regression keeps them
# (a lower dev MSE than random batches on STS-B, at twice the speed), as single-label does (issue 23).
TASK_BATCHING = {"single-label": DEFAULT_BATCHING, "multi-label": "random", "regression": DEFAULT_BATCHING}

# --task: what a label is (docs/tasks.md). single-label: one class per text; multi-label: zero or more of a
# fixed set; regression: a real number. The model's head and loss follow (``config.problem_type``).
TASKS: tuple[str, ...] = ("single-label", "multi-label", "regression")
PROBLEM_TYPES = {"single-label": "single_label_classification", "multi-label": "multi_label_classification",
                 "regression": "regression"}
# --metric: what the grid maximises, per task, the task's default first. Each names a key of the task's
# metrics (``training.outputs.task_metrics``). MSE and MAE are reported for regression but not maximised.
THRESHOLDS = ("fixed", "tuned")  # multi-label decisions: at 0.5, or per label as tuned on dev
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "single-label": ("macro-f1", "micro-f1", "accuracy", "mcc"),
    "multi-label": ("micro-f1", "macro-f1", "samples-f1", "subset-accuracy"),
    "regression": ("pearson", "spearman"),
}
METRICS: tuple[str, ...] = tuple(dict.fromkeys(m for names in TASK_METRICS.values() for m in names))
_METRIC_KEYS = {"macro-f1": "f1", "micro-f1": "micro_f1", "accuracy": "accuracy", "mcc": "mcc",
                "samples-f1": "samples_f1", "subset-accuracy": "subset_accuracy", "pearson": "pearson",
                "spearman": "spearman"}
_METRIC_LABELS = {"macro-f1": "macro-F1", "micro-f1": "micro-F1", "accuracy": "accuracy", "mcc": "MCC",
                  "samples-f1": "samples-F1", "subset-accuracy": "subset accuracy", "pearson": "Pearson",
                  "spearman": "Spearman"}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """Parse ``"8,16,32"``; raise ConfigError naming ``what`` on anything else."""
    values = []
    for item in _split_list(text, what):
        try:
            values.append(int(item))
        except ValueError:
            raise ConfigError(f"{what}: {item!r} is not a whole number (expected e.g. 8,16,32)") from None
    return tuple(values)


def parse_float_list(text: str, what: str) -> tuple[float, ...]:
    """Parse ``"1e-4,5e-5"``; raise ConfigError naming ``what`` on anything else."""
    values = []
    for item in _split_list(text, what):
        try:
            values.append(float(item))
        except ValueError:
            raise ConfigError(f"{what}: {item!r} is not a number (expected e.g. 1e-4,5e-5)") from None
    return tuple(values)


def _split_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ConfigError(f"{what}: {text!r} is not a comma-separated list (expected e.g. 1,2,3)")
    return items


def check_name(name: str, what: str, field: str | None = None) -> str:
    """A name used in a file name: letters, digits, '.', '_', '-'; never a path. ``what`` starts the message
    (``study name``, or the setting itself); ``field`` is the setting it names, when it is one."""
    if not _NAME_RE.match(name) or ".." in name:
        raise ConfigError(
            f"{what} {name!r} is not allowed: use letters, digits, '.', '_' and '-' only "
            "(it becomes a file name, so no '/' or '..')", field)
    return name


@dataclass(frozen=True)
class SearchSpace:
    """The grid: every batch size crossed with every learning rate."""

    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    learning_rates: tuple[float, ...] = DEFAULT_LEARNING_RATES

    def __post_init__(self) -> None:
        for what, values in (("batch sizes", self.batch_sizes), ("learning rates", self.learning_rates)):
            if not values:
                raise ConfigError(f"{what}: the list is empty")
            if len(set(values)) != len(values):
                raise ConfigError(f"{what}: {list(values)} has a repeated value")
        given: tuple[object, ...] = self.batch_sizes  # checked as values a caller may have typed wrong
        for bs in given:
            if isinstance(bs, bool) or not isinstance(bs, int) or bs <= 0:
                raise ConfigError(f"batch sizes: {bs!r} must be a whole number above 0")
        rates: tuple[object, ...] = self.learning_rates
        for lr in rates:
            if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
                raise ConfigError(f"learning rates: {lr!r} must be a finite number above 0")
        # Grid values must be plain int/float to survive Optuna's storage round trip.
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        object.__setattr__(self, "learning_rates", tuple(float(lr) for lr in self.learning_rates))

    def as_grid(self) -> dict[str, list[int] | list[float]]:
        return {"batch_size": list(self.batch_sizes), "learning_rate": list(self.learning_rates)}

    def points(self) -> list[HParams]:
        """Every grid point, batch size major, in the order given."""
        return [HParams(bs, lr) for bs in self.batch_sizes for lr in self.learning_rates]

    def __len__(self) -> int:
        return len(self.batch_sizes) * len(self.learning_rates)


@dataclass(frozen=True, order=True)
class HParams:
    """One grid point."""

    batch_size: int
    learning_rate: float

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> HParams:
        return cls(int(params["batch_size"]), float(params["learning_rate"]))

    @classmethod
    def of_trial(cls, params: dict[str, object]) -> HParams | None:
        """The point of a trial's params; None while a running trial has not suggested both yet."""
        if "batch_size" in params and "learning_rate" in params:
            return cls.from_params(params)
        return None


@dataclass(frozen=True)
class Metric:
    """The objective: a ``--metric`` name and what it is called in metrics dicts, tables and the study."""

    name: str = "macro-f1"

    def __post_init__(self) -> None:
        if self.name in ("mse", "mae"):
            raise ConfigError(f"metric {self.name!r}: lower is better, and the grid maximises its metric; use "
                              "pearson or spearman (MSE and MAE are reported beside them)", "metric")
        if self.name not in METRICS:
            raise ConfigError(f"metric {self.name!r}: use one of {', '.join(METRICS)}", "metric")

    @classmethod
    def for_task(cls, name: str | None, task: str) -> Metric:
        """``name``, or the task's default (``TASK_METRICS``); a metric of another task is a ConfigError."""
        metric = cls(name or TASK_METRICS[task][0])
        if metric.name not in TASK_METRICS[task]:
            raise ConfigError(f"metric {metric.name!r} does not fit --task {task}: use one of "
                              f"{', '.join(TASK_METRICS[task])}", "metric")
        return metric

    @classmethod
    def of_record(cls, stored: str) -> Metric:
        """From the study's stored name (``dev_macro_f1``, ...: what every study since 0.1 records)."""
        return cls(stored.removeprefix("dev_").replace("_", "-"))

    @property
    def key(self) -> str:
        """Its key in ``classification_metrics`` (and in eval_results.json after ``eval_``)."""
        return _METRIC_KEYS[self.name]

    @property
    def label(self) -> str:
        """``macro-F1``, ``micro-F1``, ``accuracy``, ``MCC``."""
        return _METRIC_LABELS[self.name]

    @property
    def short(self) -> str:
        """How ``tune`` names it: ``F1`` for macro-F1, as the reference prints ``Best F1 is``."""
        return "F1" if self.name == "macro-f1" else self.label

    @property
    def stored(self) -> str:
        return "dev_" + self.name.replace("-", "_")


@dataclass(frozen=True)
class DataSpec:
    """Where the three splits are and which columns to read. Column names match case-insensitively."""

    data_dir: Path
    text_column: str = "sentence"
    label_column: str = "Label"
    text_pair_column: str | None = None
    # multi-label: a label column of names joined by ``label_separator`` (TSV, CSV), or the wide layout: one
    # 0/1 column per label (``label_columns``; ("*",): every column but the text and the pair)
    label_separator: str = ","
    label_columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not self.label_separator:
            raise ConfigError("label_separator must not be empty", "label_separator")
        if self.label_columns is not None:
            columns = tuple(c.strip() for c in self.label_columns)
            if not columns or any(not c for c in columns) or len(set(columns)) != len(columns):
                raise ConfigError(f"label_columns: {','.join(self.label_columns)!r} is not a list of distinct "
                                  "column names", "label_columns")
            object.__setattr__(self, "label_columns", columns)
        for what, col in (("text_column", self.text_column), ("label_column", self.label_column)):
            if not col or not col.strip():
                raise ConfigError(f"{what} must not be empty", what)


@dataclass(frozen=True)
class LoraSettings:
    """``--lora``: low-rank adapters (``training.lora``) of ``rank`` with scale ``alpha / rank`` and ``dropout``
    on ``targets`` (None: peft's defaults for the architecture); part of a study's identity."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.1
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.rank <= 0 or self.alpha <= 0:
            raise ConfigError(f"lora_rank and lora_alpha must be above 0, got {self.rank} and {self.alpha}", "lora")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.dropout}", "lora_dropout")
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(self.targets))


@dataclass(frozen=True)
class TrainSettings:
    """How one model is fine-tuned: the same for every trial and every replica of a study.

    These make trials comparable, so a study records them and a resume must agree on all of them. How
    and where the work runs (device, precision, threads) is ``MachineSettings``.
    """

    model: str
    tokenizer: str | None = None
    epochs: float = 4.0
    max_steps: int | None = None
    max_seq_length: int = 128
    seed: int = 1
    batching: str = "auto"  # ``BATCHINGS``, or auto: ``TASK_BATCHING[task]`` (what a study records)
    task: str = "single-label"  # ``TASKS``: the head and the loss
    # multi-label: a label at probability 0.5 (fixed), or at a threshold per label chosen on dev (tuned)
    thresholds: str = "fixed"
    lora: LoraSettings | None = None  # None: every weight fine-tuned

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model must not be empty", "model")
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r}: use one of {', '.join(TASKS)}", "task")
        if self.thresholds not in THRESHOLDS:
            raise ConfigError(f"thresholds {self.thresholds!r}: use one of {', '.join(THRESHOLDS)}", "thresholds")
        if self.thresholds == "tuned" and self.task != "multi-label":
            raise ConfigError(f"--thresholds tuned is for --task multi-label (a label per threshold), not {self.task}",
                              "thresholds")
        object.__setattr__(self, "epochs", float(self.epochs))
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ConfigError(f"epochs must be above 0, got {self.epochs}", "epochs")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"max_steps must be above 0, got {self.max_steps}", "max_steps")
        if self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length must be at least 8, got {self.max_seq_length}", "max_seq_length")
        if self.batching == "auto":
            object.__setattr__(self, "batching", TASK_BATCHING[self.task])
        if self.batching not in BATCHINGS:
            raise ConfigError(f"batching {self.batching!r}: use one of {', '.join(BATCHINGS)}", "batching")

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer or self.model

    @property
    def epochs_label(self) -> str:
        """The epochs part of a replica folder name: ``4`` rather than ``4.0``."""
        return f"{self.epochs:g}" if self.max_steps is None else f"{self.max_steps}steps"


@dataclass(frozen=True)
class MachineSettings:
    """Where and how the work runs on this machine; never part of a study's identity.

    ``threads`` is the torch thread count of the worker processes ``tune`` starts (default: the cores
    shared among them) and of the command line; a library call leaves the calling process's own thread
    count alone (``configure_process`` sets it, for those who want the command line's settings).
    """

    device: str | None = None
    precision: str = "fp32"
    eval_batch_size: int = 128
    threads: int | None = None
    # examples per forward/backward pass; a larger batch (the grid's, the effective one) accumulates its
    # micro-batches' gradients into one optimizer step. None: the whole batch at once
    micro_batch_size: int | None = None
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (long texts, big models)

    def __post_init__(self) -> None:
        if self.micro_batch_size is not None and self.micro_batch_size <= 0:
            raise ConfigError(f"micro_batch_size must be above 0, got {self.micro_batch_size}", "micro_batch_size")
        if self.eval_batch_size <= 0:
            raise ConfigError(f"eval_batch_size must be above 0, got {self.eval_batch_size}", "eval_batch_size")
        if self.device is not None and not re.fullmatch(r"cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"device {self.device!r}: use cpu, cuda, cuda:N or mps", "device")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}", "precision")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError(f"threads must be above 0, got {self.threads}", "threads")


@dataclass(frozen=True)
class StudySpec:
    """Which study, where it is stored, and how its outputs are named."""

    study_name: str
    storage: str
    config_name: str = "bert-custom"
    task_name: str = "sentiment"
    max_retries: int = 2
    pruner: str = DEFAULT_PRUNER
    confirm_top: int = DEFAULT_CONFIRM_TOP  # grid points trained again with more seeds once the grid is done
    confirm_seeds: int = DEFAULT_CONFIRM_SEEDS  # how many more seeds each of them gets
    metric: str | None = None  # what the grid maximises (``TASK_METRICS``); None: the task's default
    # where trials keep their weights for `train` to reuse: a folder, s3://BUCKET, gs://BUCKET or "none";
    # None: a folder beside the SQLite file (``study.artifacts.default_artifact_store``)
    artifact_store: str | None = None

    def __post_init__(self) -> None:
        if self.metric is not None:
            Metric(self.metric)
        if self.artifact_store is not None and not self.artifact_store.strip():
            raise ConfigError("artifact_store must not be empty (give a folder, a bucket URL or none)",
                              "artifact_store")
        for what, count in (("confirm_top", self.confirm_top), ("confirm_seeds", self.confirm_seeds)):
            if count < 0:
                raise ConfigError(f"{what} must be 0 or more, got {count}", what)
        if self.pruner not in PRUNERS:
            raise ConfigError(f"pruner {self.pruner!r}: use one of {', '.join(PRUNERS)}", "pruner")
        check_name(self.study_name, "study name")
        check_name(self.config_name, "config_name", "config_name")
        check_name(self.task_name, "task_name", "task_name")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {self.max_retries}", "max_retries")


def default_study_name(config_name: str, model: str, task_name: str) -> str:
    """``<config-name>-<model basename>_<task-name>``, as the reference names its runs."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", Path(model.rstrip("/")).name) or "model"
    return f"{config_name}-{base}_{task_name}"


def default_storage(study_name: str, studies_dir: Path = Path("studies")) -> str:
    return f"sqlite:///{studies_dir / (check_name(study_name, 'study name') + '.db')}"


def parse_seeds(text: str) -> tuple[int, ...]:
    seeds = parse_int_list(text, "--seeds")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: {text!r} has a repeated seed")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds: {text!r} has a negative seed")
    return seeds
