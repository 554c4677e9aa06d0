"""``run``: check every input, tune the grid, then train the replicas with the best point.

The library's whole job in one call; the ``run`` command is this and printing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from optuna_seqclf.hooks import Progress, StepHook, silent
from optuna_seqclf.replicas import ReplicasResult, check_writable, train_replicas
from optuna_seqclf.settings import DEFAULT_SEEDS, DataSpec, MachineSettings, SearchSpace, StudySpec, TrainSettings
from optuna_seqclf.tracking import DEFAULT_TRACKING, Tracking, check_tracking
from optuna_seqclf.training.loop import Trainer, fine_tune
from optuna_seqclf.training.prepared import prepare
from optuna_seqclf.tuning.tune import TuneResult, tune


@dataclass(frozen=True)
class RunResult:
    tuning: TuneResult
    replicas: ReplicasResult


def run(study_spec: StudySpec, data: DataSpec, settings: TrainSettings, output_dir: Path,
        space: SearchSpace | None = None, seeds: Sequence[int] = DEFAULT_SEEDS, *,
        machine: MachineSettings | None = None, tracking: Tracking | None = DEFAULT_TRACKING,
        accept_changes: bool = False,
        workers: int = 1, progress: Progress | None = None, on_tuned: Callable[[TuneResult], None] | None = None,
        on_step: StepHook | None = None, replace_failed: bool = False, command_config: str | None = None,
        trainer: Trainer = fine_tune) -> RunResult:
    """Tune ``study_spec``'s grid, then train one replica per seed in ``output_dir`` with its best point.

    Every input (the three splits, tokenizer, model, device, output and log folders) is checked before
    anything is trained, and the corpus is read and tokenised once for both stages. ``on_tuned`` gets the
    tuning result before the replicas are trained (the command prints its table there). ``progress``
    gets one line per trial and replica; without it, worker processes say nothing either. ``trainer`` trains
    every trial and replica (``fine_tune`` unless a caller swaps it).
    """
    machine = machine or MachineSettings()
    check_tracking(tracking)
    prepared = prepare(data, settings, machine)
    check_writable(output_dir)
    tuning = tune(study_spec, data, settings, space, machine=machine, tracking=tracking,
                  accept_changes=accept_changes, progress=progress, prepared=prepared, workers=workers,
                  on_step=on_step, command_config=command_config, trainer=trainer)
    if on_tuned is not None:
        on_tuned(tuning)
    replicas = train_replicas(study_spec.study_name, study_spec.storage, output_dir, seeds, machine=machine,
                              tracking=tracking, progress=progress or silent, prepared=prepared, on_step=on_step,
                              replace_failed=replace_failed, trainer=trainer)
    return RunResult(tuning, replicas)
