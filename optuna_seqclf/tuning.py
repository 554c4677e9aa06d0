"""``tune``: validate everything, then run (or resume) the grid study. The library's entry point."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import model as model_lib
from .config import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings
from .data import Corpus, encode_corpus, read_corpus
from .objective import ERROR_ATTR, Objective
from .report import best_trial
from .study import (
    LoopStats,
    PointStatus,
    StudyRecord,
    create_or_resume,
    local_study_lock,
    open_storage,
    point_status,
    recover_interrupted,
    run_grid,
)
from .tracking import make_tracker

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Progress = Callable[[str], None]


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class Prepared:
    """Inputs checked before any training: the corpus and a tokenizer that fits the model."""

    corpus: Corpus
    tokenizer: PreTrainedTokenizerBase


def prepare(data: DataSpec, settings: TrainSettings) -> Prepared:
    """Read and validate all three splits, load the tokenizer and check the model's config."""
    corpus = read_corpus(data)
    model_lib.quiet_libraries()
    tokenizer = model_lib.load_tokenizer(settings.tokenizer_name)
    model_lib.check_model_config(settings.model, tokenizer)
    return Prepared(corpus, tokenizer)


@dataclass(frozen=True)
class TuneResult:
    study_name: str
    storage: str
    points: list[PointStatus]
    best: FrozenTrial | None
    stats: LoopStats

    @property
    def best_params(self) -> HParams | None:
        return HParams.from_params(self.best.params) if self.best is not None else None

    @property
    def failed_points(self) -> list[PointStatus]:
        return [p for p in self.points if p.complete is None]


def tune(study_spec: StudySpec, data: DataSpec, settings: TrainSettings, space: SearchSpace | None = None,
         *, log_dir: Path | None = Path("logs"), accept_changes: bool = False, progress: Progress = _silent,
         prepared: Prepared | None = None) -> TuneResult:
    """Run the grid study, or continue it: points already COMPLETE are never trained again."""
    space = space or SearchSpace()
    prepared = prepared or prepare(data, settings)
    storage = open_storage(study_spec.storage, create_dirs=True)
    record = StudyRecord.build(study_spec, data, settings, space, prepared.corpus.fingerprint)
    study = create_or_resume(study_spec, record, storage, accept_changes=accept_changes)
    with local_study_lock(study_spec.storage) as alone:
        recovered = recover_interrupted(study, alone=alone)
        if recovered:
            progress(f"Recovered {len(recovered)} interrupted trial(s) {recovered}: their points will be trained again")
        todo = [p for p in point_status(study, space) if p.complete is None]
        stats = LoopStats(recovered=recovered)
        if todo:
            stats = _train_points(study, study_spec, space, settings, prepared, log_dir, progress, len(todo))
            stats.recovered = recovered
        else:
            progress(f"Study {study_spec.study_name!r}: all {len(space)} grid points are complete; nothing to train")
    points = point_status(study, space)
    return TuneResult(study_spec.study_name, study_spec.storage, points, best_trial(study), stats)


def _train_points(study: optuna.Study, study_spec: StudySpec, space: SearchSpace, settings: TrainSettings,
                  prepared: Prepared, log_dir: Path | None, progress: Progress, todo: int) -> LoopStats:
    model_lib.configure_torch(settings)
    encoded = encode_corpus(prepared.corpus, prepared.tokenizer, settings.max_seq_length)
    objective = Objective(prepared.corpus, encoded, prepared.tokenizer, settings, space,
                          make_tracker(log_dir, study_spec.study_name), study_spec.study_name)
    done_before = len(space) - todo
    progress(f"Study {study_spec.study_name!r} in {study_spec.storage}: {done_before}/{len(space)} points done, "
             f"training {todo}")
    counter = {"n": done_before}

    def on_trial(trial: FrozenTrial) -> None:
        p = trial.params
        head = f"trial {trial.number}: batch size {p.get('batch_size')}, learning rate {p.get('learning_rate'):g}"
        if trial.state == TrialState.COMPLETE:
            counter["n"] += 1
            secs = (trial.datetime_complete - trial.datetime_start).total_seconds()
            progress(f"[{counter['n']}/{len(space)}] {head}: dev F1 {trial.value:.4f} ({secs:.1f} s)")
        else:
            progress(f"[{counter['n']}/{len(space)}] {head}: {trial.state.name} "
                     f"({trial.user_attrs.get(ERROR_ATTR, 'no reason recorded')})")

    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.CRITICAL)  # we report failed trials ourselves, without tracebacks
    try:
        return run_grid(study, space, objective, study_spec.max_retries, on_trial)
    finally:
        optuna_logger.setLevel(level)
