"""``tune``: validate everything, then run (or resume) the grid study. The library's entry point."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import model as model_lib
from .config import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings
from .data import Corpus, encode_corpus, read_corpus
from .errors import ConfigError, SeqClfError
from .fast_exit import exit_now
from .interrupts import gated_interrupts
from .model import StepHook
from .objective import DUPLICATE_ATTR, ERROR_ATTR, Objective
from .report import best_trial
from .study import (
    LoopStats,
    PointStatus,
    StudyRecord,
    create_or_resume,
    load_study,
    local_study_lock,
    make_pruner,
    open_storage,
    point_status,
    recover_interrupted,
    run_grid,
    study_sampler,
)
from .tracking import check_log_dir, make_tracker

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
    model_lib.check_device(settings)
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
        return [p for p in self.points if not p.finished]


def tune(study_spec: StudySpec, data: DataSpec, settings: TrainSettings, space: SearchSpace | None = None,
         *, log_dir: Path | None = Path("logs"), accept_changes: bool = False, progress: Progress | None = None,
         prepared: Prepared | None = None, workers: int = 1, on_step: StepHook | None = None) -> TuneResult:
    """Run the grid study, or continue it: points already COMPLETE are never trained again.

    ``workers`` > 1 trains that many points at once, each in its own process, on the same study.
    ``progress`` gets one line per event (trial done, with ETA); ``on_step(done, total)`` is called after
    every training step of a trial (single worker only).
    """
    if workers < 1:
        raise ConfigError(f"--workers must be 1 or more, got {workers}")
    progress = progress or _silent  # workers print nothing either when there is no progress to show
    space = space or SearchSpace()
    check_log_dir(log_dir)
    prepared = prepared or prepare(data, settings)
    storage = open_storage(study_spec.storage, create_dirs=True)
    record = StudyRecord.build(study_spec, data, settings, space, prepared.corpus.fingerprint)
    study = create_or_resume(study_spec, record, storage, accept_changes=accept_changes)
    with local_study_lock(study_spec.storage) as alone:
        recovered = recover_interrupted(study, alone=alone)
        if recovered:
            progress(f"Recovered {len(recovered)} interrupted trial(s) {recovered}: their points will be trained again")
        todo = sum(1 for p in point_status(study, space) if not p.finished)
        if not todo:
            progress(f"Study {study_spec.study_name!r}: all {len(space)} grid points are complete; nothing to train")
            stats = LoopStats()
        else:
            progress(f"Study {study_spec.study_name!r} in {study_spec.storage}: {len(space) - todo}/{len(space)} "
                     f"points done, training {todo}" + (f" with {workers} workers" if workers > 1 else ""))
            if workers == 1:
                stats = _train_points(study, study_spec, space, settings, prepared, log_dir, progress, workers=1,
                                      on_step=on_step)
            else:
                stats = _run_workers(study, study_spec, data, space, settings, log_dir, progress, workers)
        stats.recovered = recovered
    points = point_status(study, space)
    return TuneResult(study_spec.study_name, study_spec.storage, points, best_trial(study), stats)


def _train_points(study: optuna.Study, study_spec: StudySpec, space: SearchSpace, settings: TrainSettings,
                  prepared: Prepared, log_dir: Path | None, progress: Progress, workers: int,
                  on_step: StepHook | None = None) -> LoopStats:
    model_lib.configure_torch(settings, workers)
    tracker = make_tracker(log_dir, study_spec.study_name)  # a new Aim repo is set up meanwhile
    encoded = encode_corpus(prepared.corpus, prepared.tokenizer, settings.max_seq_length)
    started = time.monotonic()
    trained = {"n": 0}

    def on_trial(trial: FrozenTrial) -> None:
        trained["n"] += 1
        done = sum(1 for p in point_status(study, space) if p.finished)
        p = trial.params
        head = f"trial {trial.number}: batch size {p.get('batch_size')}, learning rate {p.get('learning_rate'):g}"
        if trial.state == TrialState.COMPLETE:
            secs = (trial.datetime_complete - trial.datetime_start).total_seconds()
            eta = (time.monotonic() - started) / trained["n"] * (len(space) - done) / workers
            progress(f"[{done}/{len(space)}] {head}: dev F1 {trial.value:.4f} ({secs:.1f} s; ETA {eta / 60:.1f} min)")
        elif trial.state == TrialState.PRUNED:
            progress(f"[{done}/{len(space)}] {head}: pruned after epoch {trial.user_attrs.get('pruned_after_epoch')} "
                     f"(dev F1 {trial.value if trial.value is not None else float('nan'):.4f})")
        else:
            progress(f"[{done}/{len(space)}] {head}: {trial.state.name} "
                     f"({trial.user_attrs.get(ERROR_ATTR, 'no reason recorded')})")

    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.CRITICAL)  # we report failed trials ourselves, without tracebacks
    try:
        with gated_interrupts() as gate:

            def after_step(done: int, total: int) -> None:
                gate.check()  # Ctrl-C stops here, between two steps
                if on_step is not None:
                    on_step(done, total)

            objective = Objective(prepared.corpus, encoded, prepared.tokenizer, settings, space,
                                  tracker, study_spec.study_name,
                                  on_step=after_step)
            return run_grid(study, space, objective, study_spec.max_retries, gate, on_trial)
    finally:
        optuna_logger.setLevel(level)


def _run_workers(study: optuna.Study, study_spec: StudySpec, data: DataSpec, space: SearchSpace,
                 settings: TrainSettings, log_dir: Path | None, progress: Progress, workers: int) -> LoopStats:
    """Start ``workers`` processes on the study and wait for them; Ctrl-C stops them all."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork a process that has torch threads running
    before = len(study.get_trials(deepcopy=False))
    verbose = progress is not _silent
    procs = [ctx.Process(target=_worker_main, args=(study_spec, data, space, settings, log_dir, i, workers, verbose),
                         name=f"seqclf-worker-{i}") for i in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:  # they got the same SIGINT; give them time to mark their trials
            proc.join(timeout=30)
        raise
    crashed = [p.name for p in procs if p.exitcode not in (0, None)]
    if crashed:
        progress(f"worker(s) {', '.join(crashed)} stopped with an error; run `tune` again to resume")
    new = study.get_trials(deepcopy=False)[before:]
    return LoopStats(trained=sum(1 for t in new if DUPLICATE_ATTR not in t.user_attrs),
                     failed=[t.number for t in new if t.state == TrialState.FAIL])


def _worker_main(study_spec: StudySpec, data: DataSpec, space: SearchSpace, settings: TrainSettings,
                 log_dir: Path | None, index: int, workers: int, verbose: bool) -> None:
    def progress(message: str) -> None:
        if verbose:
            print(f"[worker {index}] {message}", file=sys.stderr, flush=True)

    code = 0
    try:
        settings = model_lib.assign_device(settings, index)
        prepared = prepare(data, settings)
        study = load_study(study_spec.study_name, open_storage(study_spec.storage), study_spec.storage,
                           pruner=make_pruner(study_spec.pruner, settings.epochs, len(space)))
        study.sampler = study_sampler(study)
        with local_study_lock(study_spec.storage):
            _train_points(study, study_spec, space, settings, prepared, log_dir, progress, workers)
    except SeqClfError as exc:
        print(f"[worker {index}] Error: {exc}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    exit_now(code)  # the parent waits for this process: skip the interpreter's teardown
