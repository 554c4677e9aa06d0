"""``tune``: validate everything, then run (or resume) the grid study, in this process or in workers."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seqclf.errors import ConfigError, SeqClfError
from optuna_seqclf.hooks import Progress, StepHook, silent
from optuna_seqclf.interrupts import gated_interrupts
from optuna_seqclf.runtime import configure_process, exit_now
from optuna_seqclf.settings import DataSpec, HParams, MachineSettings, Metric, SearchSpace, StudySpec, TrainSettings
from optuna_seqclf.study.artifacts import (
    NO_STORE,
    Sweeper,
    check_artifact_store,
    default_artifact_store,
    open_artifact_store,
    resolve_store,
)
from optuna_seqclf.study.queue import PointStatus, TrialResult, point_status, recover_interrupted
from optuna_seqclf.study.record import StudyRecord, create_or_resume, grid_sampler, make_pruner
from optuna_seqclf.study.schema import (
    COMMAND_CONFIG_ATTR,
    DUPLICATE_ATTR,
    SELECTION_ATTR,
)
from optuna_seqclf.study.selection import Selection, select
from optuna_seqclf.study.steps import Done
from optuna_seqclf.study.storage import load_study, local_study_lock, open_storage
from optuna_seqclf.study.tracked import settle_dead_runs, tracked_study
from optuna_seqclf.tracking import DEFAULT_TRACKING, Tracker, Tracking, check_tracking, make_tracker, warning_line
from optuna_seqclf.training.loop import Trainer, fine_tune
from optuna_seqclf.training.model import assign_device
from optuna_seqclf.training.prepared import Prepared, prepare
from optuna_seqclf.tuning.lines import plan_line, say_left_to_others, trial_line
from optuna_seqclf.tuning.objective import Objective
from optuna_seqclf.tuning.worker import LoopStats, next_step, run_grid

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


@dataclass(frozen=True)
class TuneResult:
    """Where the study stands after ``tune``: every grid point, the chosen point and its evidence
    (``selection``), what this call did."""

    study_name: str
    storage: str
    points: list[PointStatus]
    selection: Selection
    stats: LoopStats = field(default_factory=LoopStats)
    metric: Metric = field(default_factory=Metric)  # what the grid maximises
    task: str = "single-label"  # what a label is (``settings.TASKS``)

    @property
    def best(self) -> TrialResult | None:
        """The chosen point's grid trial (with the confirmation stage: the point best on mean over seeds)."""
        return self.selection.best

    @property
    def best_params(self) -> HParams | None:
        return self.best.point if self.best is not None else None

    @property
    def failed_points(self) -> list[PointStatus]:
        """Points with no result: not finished, or INFEASIBLE (out of memory at micro-batch 1)."""
        return [p for p in self.points if not p.finished or p.state == "INFEASIBLE"]


def tune(study_spec: StudySpec, data: DataSpec, settings: TrainSettings, space: SearchSpace | None = None,
         *, machine: MachineSettings | None = None, tracking: Tracking | None = DEFAULT_TRACKING,
         accept_changes: bool = False, progress: Progress | None = None, prepared: Prepared | None = None,
         workers: int = 1, on_step: StepHook | None = None, command_config: str | None = None,
         trainer: Trainer = fine_tune) -> TuneResult:
    """Run the grid study, or continue it: points already COMPLETE are never trained again. ``workers`` > 1
    trains that many points at once, each in its own process, on the same study. ``progress`` gets one line per
    event (trial done, with ETA); ``on_step(done, total)`` is called after every training step of a trial
    (single worker only). ``command_config`` (the command line's resolved options, as a ``--config`` file) is
    stored on the study for ``report``. ``trainer`` trains each trial (``fine_tune`` unless a caller swaps it).
    Trials that could be chosen keep their weights in ``study_spec.artifact_store``. ``tracking`` says where
    runs are tracked (Aim in logs/ by default; None: nowhere). The calling process's settings (threads,
    allocator, log levels, CUDA device) are left as they are."""
    if workers < 1:
        raise ConfigError(f"workers must be 1 or more, got {workers}", "workers")
    progress, machine, space = progress or silent, machine or MachineSettings(), space or SearchSpace()
    check_micro_batch(machine, space)
    check_tracking(tracking)
    study_spec = with_artifact_store(study_spec)  # checked, not created yet
    prepared = prepared or prepare(data, settings, machine)
    storage = open_storage(study_spec.storage, create_dirs=True)
    record = StudyRecord.build(study_spec, data, settings, space, prepared.corpus.fingerprint)
    study = create_or_resume(study_spec, record, storage, accept_changes=accept_changes)
    store = open_artifact_store(study_spec.artifact_store or NO_STORE)  # created once every input is known good
    if command_config is not None:
        study.set_user_attr(COMMAND_CONFIG_ATTR, command_config)
    # made once every input is known good; MLflow sets up in the background, while the first trial starts
    tracker = make_tracker(tracking, study_spec.study_name, warn=warning_line(progress))
    with tracked_study(study, tracker):
        stats = _tune_alone_or_not(study, study_spec, data, settings, space, machine, prepared, tracking, tracker,
                                   progress, workers, on_step, trainer, store)
    say_left_to_others(stats, progress)
    selection = select(study, study_spec.max_retries)
    study.set_user_attr(SELECTION_ATTR, selection.to_json())  # for tools that read the study (dashboard)
    record = StudyRecord.from_study(study)
    return TuneResult(study_spec.study_name, study_spec.storage, point_status(study, space), selection, stats,
                      record.objective, record.settings.task)


def _tune_alone_or_not(study: optuna.Study, study_spec: StudySpec, data: DataSpec, settings: TrainSettings,
                       space: SearchSpace, machine: MachineSettings, prepared: Prepared, tracking: Tracking | None,
                       tracker: Tracker, progress: Progress, workers: int, on_step: StepHook | None,
                       trainer: Trainer, store: ArtifactStore | None) -> LoopStats:
    """Under the study's local lock: recover what dead processes left running, then train what is left, here or
    in ``workers`` processes."""
    with local_study_lock(study_spec.storage) as alone:
        if recovered := recover_interrupted(study, alone=alone):
            progress(f"Recovered {len(recovered)} interrupted trial(s) {recovered}: their points will be trained again")
        settle_dead_runs(study, tracker)
        plan = StudyRecord.from_study(study).confirm_plan()
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if isinstance(next_step(study, space, plan, study_spec.max_retries), Done) and not running:
            progress(f"Study {study_spec.study_name!r}: all {len(space)} grid points are complete"
                     + (" and confirmed" if plan.active else "") + "; nothing to train")
            stats = LoopStats()
        else:
            progress(plan_line(study, study_spec, space, plan, workers))
            if workers == 1:
                stats = _train_points(study, study_spec, space, settings, machine, prepared, tracker, progress,
                                      workers=1, on_step=on_step, trainer=trainer, store=store)
            else:
                tracker.study_run()  # the study's run made before the workers start: they all find this one
                stats = _run_workers(study, study_spec, data, space, settings, machine, tracking, progress, workers,
                                     trainer)
        stats.recovered = recovered
        Sweeper(store).sweep(study)  # what the last trials (and recovered ones) left behind
    return stats


def check_micro_batch(machine: MachineSettings, space: SearchSpace) -> None:
    """A micro-batch above every batch size of the grid would never be used: surely a mistake. (Above some of
    them it is fine: a batch smaller than the micro-batch runs whole.)"""
    largest = max(space.batch_sizes)
    if machine.micro_batch_size is not None and machine.micro_batch_size > largest:
        raise ConfigError(f"micro_batch_size {machine.micro_batch_size} is above the grid's largest batch size "
                          f"{largest}: the batch size is the effective batch, a micro-batch a part of it",
                          "micro_batch_size")


def with_artifact_store(spec: StudySpec) -> StudySpec:
    """``spec`` with its artifact store resolved (the default folder beside the study, a folder made absolute:
    workers and ``train`` may run elsewhere; a bucket URL or ``none`` as given) and checked usable."""
    resolved = resolve_store(spec.artifact_store or default_artifact_store(spec.storage, spec.study_name))
    check_artifact_store(resolved)
    return replace(spec, artifact_store=resolved)


def study_result(study_name: str, storage_url: str) -> TuneResult:
    """Where a study stands, read without training anything (a study being tuned elsewhere too)."""
    study = load_study(study_name, open_storage(storage_url, must_exist=True), storage_url)
    record = StudyRecord.from_study(study)
    return TuneResult(study_name, storage_url, point_status(study, record.space), select(study),
                      metric=record.objective, task=record.settings.task)


def _train_points(study: optuna.Study, study_spec: StudySpec, space: SearchSpace, settings: TrainSettings,
                  machine: MachineSettings, prepared: Prepared, tracker: Tracker, progress: Progress,
                  workers: int, on_step: StepHook | None = None, trainer: Trainer = fine_tune,
                  store: ArtifactStore | None = None) -> LoopStats:
    """Train points in this process until the grid is done; one progress line per trial. Trials that could be
    chosen keep their weights in ``store``; those that no longer can are deleted from it after each trial."""
    metric = StudyRecord.from_study(study).objective  # the study's, also when resumed with --accept-changes
    prepared.encoded(settings.max_seq_length)  # tokenise before the first trial, once
    started = time.monotonic()
    trained = 0
    sweeper = Sweeper(store)

    def on_trial(trial: FrozenTrial) -> None:
        nonlocal trained
        trained += 1
        sweeper.sweep(study)
        settle_dead_runs(study, tracker)  # a run another worker's death left open: its trial has moved on
        done = sum(1 for p in point_status(study, space) if p.finished)
        eta = (time.monotonic() - started) / trained * (len(space) - done) / workers
        progress(trial_line(trial, done, len(space), eta, metric))

    with gated_interrupts() as gate:

        def after_step(done: int, total: int) -> None:
            gate.check()  # Ctrl-C stops here, between two steps
            if on_step is not None:
                on_step(done, total)

        objective = Objective(prepared, settings, machine, space, tracker, study_spec.study_name, on_step=after_step,
                              metric=metric, trainer=trainer, store=store, progress=progress)
        return run_grid(study, space, objective, study_spec.max_retries, gate, on_trial)


def _run_workers(study: optuna.Study, study_spec: StudySpec, data: DataSpec, space: SearchSpace,
                 settings: TrainSettings, machine: MachineSettings, tracking: Tracking | None,
                 progress: Progress, workers: int, trainer: Trainer) -> LoopStats:
    """Start ``workers`` processes on the study and wait for them; Ctrl-C stops them all."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork a process that has torch threads running
    finished_before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    verbose = progress is not silent
    procs = [ctx.Process(target=_worker_main, name=f"seqclf-worker-{i}",
                         args=(study_spec, data, space, settings, machine, tracking, i, workers, verbose, trainer))
             for i in range(workers)]
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
    new = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.number not in finished_before]
    return LoopStats(trained=sum(1 for t in new if DUPLICATE_ATTR not in t.user_attrs),
                     failed=[t.number for t in new if t.state == TrialState.FAIL])


def _worker_main(study_spec: StudySpec, data: DataSpec, space: SearchSpace, settings: TrainSettings,
                 machine: MachineSettings, tracking: Tracking | None, index: int, workers: int, verbose: bool,
                 trainer: Trainer = fine_tune) -> None:
    """A worker process's entry point: its own process settings, then the grid until it is done."""
    def progress(message: str) -> None:
        if verbose:
            print(f"[worker {index}] {message}", file=sys.stderr, flush=True)

    configure_process(machine.threads, workers)
    code = 0
    try:
        machine = assign_device(machine, index)
        prepared = prepare(data, settings, machine)
        study = load_study(study_spec.study_name, open_storage(study_spec.storage), study_spec.storage,
                           pruner=make_pruner(study_spec.pruner, settings.epochs, len(space)))
        study.sampler = grid_sampler(StudyRecord.from_study(study))
        store = open_artifact_store(study_spec.artifact_store or NO_STORE)
        with local_study_lock(study_spec.storage):
            tracker = make_tracker(tracking, study_spec.study_name, warn=warning_line(progress if verbose else None))
            _train_points(study, study_spec, space, settings, machine, prepared, tracker, progress, workers,
                          trainer=trainer, store=store)
    except SeqClfError as exc:
        print(f"[worker {index}] Error: {exc}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    exit_now(code)  # the parent waits for this process: skip the interpreter's teardown
