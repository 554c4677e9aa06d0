"""What the rest of the package sees of tracking: ``Tracking`` (where runs go), the ``Tracker`` and ``TrackedRun``
protocols (``base``), and ``make_tracker``. Aim (``aim_runs``) and MLflow (``mlflow_server``, ``mlflow_runs``) are
imported only by this package, and only when asked for.

A run's life: ``start`` (its parameters, and tags such as ``stage`` or ``retry_of``), ``track`` (a metric at a
step: per epoch on dev, per logging step on train), ``note`` (a tag: ``failed_run``, ``pruned_after``),
``attach`` (a file, e.g. a replica's results), ``close`` with how it ended (``RUN_STATES``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna_seqclf.errors import ConfigError, redact
from optuna_seqclf.hooks import LogHook, Progress, silent
from optuna_seqclf.tracking.base import NoStudyRun, TrackedRun, Tracker

TRACKERS = ("aim", "mlflow")
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"  # a real database beside the studies, not MLflow's deprecated file store
# how a run ended: Optuna's trial states, INFEASIBLE (out of memory at micro-batch 1) and INTERRUPTED (Ctrl-C,
# SIGTERM, or a process that died and whose run a later command settled)
RUN_STATES = ("COMPLETE", "PRUNED", "FAIL", "INFEASIBLE", "INTERRUPTED")


@dataclass(frozen=True)
class Tracking:
    """Where a study's runs are tracked: an Aim repository folder (``aim``; None: no Aim) and an MLflow tracking
    URI (``mlflow``: ``sqlite:///mlflow.db``, ``http://host:5000``, ``postgresql://...``; None: no MLflow)."""

    aim: Path | None = Path("logs")
    mlflow: str | None = None

    @classmethod
    def of(cls, trackers: Iterable[str], log_dir: Path, mlflow_uri: str | None = None) -> Tracking:
        """From the command line's ``--tracker`` names (``none`` alone: nothing), ``--log-dir`` and
        ``--mlflow-uri`` (else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``)."""
        names = set(trackers)
        unknown = sorted(names - {*TRACKERS, "none"})
        if unknown:
            raise ConfigError(f"tracker {','.join(unknown)}: unknown; choose from {', '.join((*TRACKERS, 'none'))} "
                              "(several with commas: aim,mlflow)", "tracker")
        if "none" in names and len(names) > 1:
            raise ConfigError("tracker none cannot be combined with another tracker", "tracker")
        uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI
        return cls(Path(log_dir) if "aim" in names else None, uri if "mlflow" in names else None)


DEFAULT_TRACKING = Tracking()  # Aim in logs/, as the reference tracks


class _NullRun:
    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None:
        pass

    def note(self, name: str, value: str) -> None:
        pass

    def attach(self, path: Path, folder: str | None = None) -> None:
        pass

    def close(self, state: str = "COMPLETE") -> None:
        pass


class NullTracker(NoStudyRun):
    """Tracks nothing (``--tracker none``, or Aim not installed)."""

    def start(self, name: str, hparams: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> TrackedRun:
        return _NullRun()


class _Runs:
    """One run in every tracker; a call goes to each in turn."""

    def __init__(self, runs: list[TrackedRun]) -> None:
        self._runs = runs

    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None:
        for run in self._runs:
            run.track(name, value, step=step, subset=subset, epoch=epoch)

    def note(self, name: str, value: str) -> None:
        for run in self._runs:
            run.note(name, value)

    def attach(self, path: Path, folder: str | None = None) -> None:
        for run in self._runs:
            run.attach(path, folder)

    def close(self, state: str = "COMPLETE") -> None:
        for run in self._runs:
            run.close(state)


class Trackers:
    """Several trackers as one (``--tracker aim,mlflow``)."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self._trackers = trackers

    def start(self, name: str, hparams: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> TrackedRun:
        return _Runs([t.start(name, hparams, tags) for t in self._trackers])

    def settle(self, finished: Mapping[str, str]) -> None:
        for tracker in self._trackers:
            tracker.settle(finished)

    def finish(self, state: str) -> None:
        for tracker in self._trackers:
            tracker.finish(state)

    def study_run(self) -> dict[str, str] | None:
        return next((where for t in self._trackers if (where := t.study_run()) is not None), None)


def _nearest_existing(path: Path) -> Path:
    """``path``, or the nearest of its parents that exists: the folder it would be made in."""
    return next((p for p in (path, *path.parents) if p.exists()), path)


def check_log_dir(log_dir: Path | None) -> None:
    """Refuse, before any training, a log folder that is a file or sits in one that cannot be written."""
    if log_dir is None:
        return
    existing = _nearest_existing(Path(log_dir))
    if not existing.is_dir():
        raise ConfigError(f"log_dir {log_dir}: {existing} is a file, not a folder", "log_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"log_dir {log_dir}: {existing} is not writable", "log_dir")


def check_tracking(tracking: Tracking | None) -> None:
    """Refuse, before anything is written or trained, an Aim folder that cannot be one, a missing MLflow, an
    MLflow URI nothing answers at."""
    if tracking is None:
        return
    check_log_dir(tracking.aim)
    if tracking.mlflow is not None:
        from optuna_seqclf.tracking.mlflow_server import check_mlflow

        check_mlflow(tracking.mlflow)
        _check_sqlite_folder(tracking.mlflow)


def _check_sqlite_folder(uri: str) -> None:
    """A SQLite database's folder, as the Aim folder: one that is, or can be made, and written."""
    if uri.startswith("sqlite:///"):
        folder = _nearest_existing(Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent)
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"mlflow_uri {redact(uri)}: {folder} is not a writable folder", "mlflow_uri")


def make_tracker(tracking: Tracking | None, experiment: str, warn: Progress | None = None) -> Tracker:
    """The trackers ``tracking`` names, for the study ``experiment``; ``warn`` hears of a tracking server that
    stopped answering (the study goes on). Aim not installed: no Aim, with one warning."""
    if tracking is None:
        return NullTracker()
    trackers: list[Tracker] = []
    if tracking.aim is not None:
        trackers += _aim(tracking.aim, experiment)
    if tracking.mlflow is not None:
        from optuna_seqclf.tracking.mlflow_runs import MlflowTracker

        trackers.append(MlflowTracker(tracking.mlflow, experiment, warn or _warning))
    return trackers[0] if len(trackers) == 1 else Trackers(trackers) if trackers else NullTracker()


def _aim(log_dir: Path, experiment: str) -> list[Tracker]:
    from optuna_seqclf.tracking.aim_runs import AimTracker, aim_installed

    if not aim_installed():
        warnings.warn("aim is not installed (it has no wheel for this Python): tracking is off",
                      stacklevel=3)
        return []
    return [AimTracker(log_dir, experiment)]


def warning_line(progress: Progress | None) -> Progress | None:
    """A tracker's warnings (a server that stopped answering) as progress lines; None (Python warnings) where
    there is no ``progress`` to say them."""
    if progress is None or progress is silent:
        return None
    return lambda message: progress(f"warning: {message}")


def _warning(message: str) -> None:
    warnings.warn(message, stacklevel=2)


def log_to(run: TrackedRun) -> LogHook:
    """A ``fine_tune`` log hook that tracks the training loss, learning rate and gradient norm (subset=train)."""

    def on_log(record: dict[str, float]) -> None:
        for key in ("loss", "learning_rate", "grad_norm"):
            if key in record:
                run.track(key, record[key], step=int(record["step"]), subset="train", epoch=record.get("epoch"))

    return on_log

