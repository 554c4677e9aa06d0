"""Train the final models: the study's best (batch size, learning rate), one replica per seed.

Each replica is built in a hidden temporary folder and renamed into place only when every file is
written, so a replica folder that exists is complete, and a rerun trains only the missing seeds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna_seqclf.errors import OutputError, StudyError
from optuna_seqclf.hooks import Progress, StepHook, silent
from optuna_seqclf.replicas.job import ReplicaJob
from optuna_seqclf.replicas.results import ReplicaResult, ReplicasResult, origin_line, summary_json
from optuna_seqclf.settings import DEFAULT_SEEDS, HParams, MachineSettings
from optuna_seqclf.study.artifacts import kept_by_seed, reading_store
from optuna_seqclf.study.queue import incomplete_grid
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.schema import REPLICAS_ATTR
from optuna_seqclf.study.selection import Selection, select
from optuna_seqclf.study.storage import load_study, open_storage
from optuna_seqclf.study.tracked import tracked_study
from optuna_seqclf.summary import Summary, headline_scores
from optuna_seqclf.tracking import DEFAULT_TRACKING, Tracking, check_tracking, make_tracker, warning_line
from optuna_seqclf.training.loop import Trainer, fine_tune
from optuna_seqclf.training.prepared import Prepared, prepare
from optuna_seqclf.training.replica_folder import ENSEMBLE_FILE, SUMMARY_FILE, replica_dir_name, write_json_atomic

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def check_writable(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and prove we can write into it (before any training)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{output_dir}: output folder cannot be written ({exc.strerror})") from None


def train_replicas(study_name: str, storage_url: str, output_dir: Path, seeds: Sequence[int] = DEFAULT_SEEDS,
                   *, data_dir: Path | None = None, model: str | None = None, tokenizer: str | None = None,
                   machine: MachineSettings | None = None, tracking: Tracking | None = DEFAULT_TRACKING,
                   progress: Progress = silent, prepared: Prepared | None = None,
                   on_step: StepHook | None = None, replace_failed: bool = False,
                   trainer: Trainer = fine_tune, artifact_store: str | None = None) -> ReplicasResult:
    """Train one replica per seed with the study's best point; reuse replicas already complete. The data
    folder, model, tokenizer and training settings are the ones the study recorded; ``data_dir``, ``model`` and
    ``tokenizer`` replace them. A replica no better than the majority class is a failed run: kept on disk,
    reported, left out of the mean and the ensemble (while another exists); with ``replace_failed`` the next
    unused seed is trained in its place (at most ``len(seeds)`` times). ``trainer`` trains each replica
    (``fine_tune`` unless a caller swaps it). A seed whose (point, seed) a trial of the study trained and kept
    (``study.artifacts``) is made from that trial's weights, from ``artifact_store`` (default: the store the
    study recorded; ``none``: train every seed). The calling process's settings are left as they are."""
    study = load_study(study_name, open_storage(storage_url, must_exist=True), storage_url)
    record = StudyRecord.from_study(study)
    selection = select(study)
    best = selection.best
    if best is None:
        raise StudyError(f"study {study_name!r} has no COMPLETE trial yet; run `optuna-seqclf tune` to finish it")
    hp, machine = best.point, machine or MachineSettings()
    if note := incomplete_grid(study, record.space):
        progress(f"The grid of {study_name!r} is not complete: {note}; the best of the points done is used. "
                 "Run `tune` to finish the grid first.")
    data = replace(record.data, data_dir=Path(data_dir)) if data_dir else record.data
    swapped: dict[str, Any] = {"model": model, "tokenizer": tokenizer}
    settings = replace(record.settings, **{k: v for k, v in swapped.items() if v is not None})
    check_writable(output_dir)
    check_tracking(tracking)
    store, no_store = reading_store(artifact_store or record.artifact_store, given=artifact_store is not None)
    prepared = prepared or prepare(data, settings, machine)
    progress(_best_line(study_name, selection, len(seeds), output_dir))
    tracker = make_tracker(tracking, study_name, warn=warning_line(progress))
    job = ReplicaJob(prepared, settings, machine, hp, record.task_name, tracker, study_name,
                     trainer, _kept_weights(study, hp, no_store, progress), store)

    def folder(seed: int) -> Path:
        return output_dir / replica_dir_name(record.config_name, record.task_name, hp, settings.epochs_label, seed)

    with tracked_study(study, tracker):
        results = job.train_all(list(seeds), folder, progress, on_step, replace_failed)
        progress(origin_line(results))
        kept = [r for r in results if r.failed_run is None] or results
        ensemble = job.score_ensemble({r.seed: Path(r.path) for r in kept})
    task = settings.task
    progress(f"ensemble of seeds {','.join(str(r.seed) for r in kept)}: {headline_scores(task, ensemble.scores)}")
    summary, summary_all = _summaries(results, kept, task)
    out = ReplicasResult(study_name, hp, best.value, output_dir, results, summary, ensemble, summary_all)
    _write_summaries(study, out, storage_url, selection)
    return out


def _summaries(results: list[ReplicaResult], kept: list[ReplicaResult], task: str) -> tuple[Summary, Summary | None]:
    """The summary of the replicas kept (not failed runs), and of all of them when some were left out."""
    summary_all = Summary.of([r.to_json() for r in results], task) if len(kept) < len(results) else None
    return Summary.of([r.to_json() for r in kept], task), summary_all


def _kept_weights(study: optuna.Study, hp: HParams, no_store: str | None, progress: Progress) -> dict[int, FrozenTrial]:
    """Seed -> the study's trial whose kept weights can be that seed's replica (none when ``no_store`` says
    why the store cannot be read)."""
    kept = kept_by_seed(study, hp)
    if kept and no_store:
        progress(f"The study kept the weights of seed(s) {','.join(map(str, sorted(kept)))}, but {no_store}: "
                 "training them")
        return {}
    return kept


def _write_summaries(study: optuna.Study, out: ReplicasResult, storage_url: str, selection: Selection) -> None:
    """The ensemble's and the replicas' summaries into the output folder, and onto the study for ``report``."""
    payload = {"study_name": out.study_name, "storage": storage_url,
               "best_trial": None if selection.best is None else selection.best.number,
               "selection": selection.to_json(), **summary_json(out)}
    write_json_atomic(out.output_dir / ENSEMBLE_FILE, out.ensemble.to_json())
    write_json_atomic(out.output_dir / SUMMARY_FILE, payload)
    study.set_user_attr(REPLICAS_ATTR, {**payload, "output_dir": str(out.output_dir.resolve())})


def _best_line(study_name: str, selection: Selection, replicas: int, output_dir: Path) -> str:
    best = selection.best
    assert best is not None
    evidence = (f"mean dev score {selection.value:.4f} over seeds {','.join(map(str, selection.confirmed[0].seeds))}"
                if selection.confirmed else f"dev score {best.value:.4f}, trial {best.number}")
    return (f"Best configuration of {study_name!r}: batch size {best.point.batch_size}, learning rate "
            f"{best.point.learning_rate!r} ({evidence}); training {replicas} replicas in {output_dir}")
