"""Experiment tracking. Aim lives here and nowhere else; ``NullTracker`` tracks nothing.

One Aim run per tuning trial and per replica, all runs of a study under one experiment name. With
aim 3.29 a closed run is not readable (``Repo.iter_runs``, the UI) until it is indexed, so ``close``
indexes it explicitly.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class TrackedRun(Protocol):
    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None: ...

    def close(self) -> None: ...


class Tracker(Protocol):
    def start(self, name: str, hparams: dict[str, Any]) -> TrackedRun: ...


class _NullRun:
    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class NullTracker:
    """Tracks nothing (``--no-track``, or Aim not installed)."""

    def start(self, name: str, hparams: dict[str, Any]) -> TrackedRun:
        return _NullRun()


class _AimRun:
    def __init__(self, run: Any, repo_path: str) -> None:
        self._run, self._repo_path = run, repo_path

    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None:
        self._run.track(float(value), name=name, step=step, epoch=epoch, context={"subset": subset})

    def close(self) -> None:
        from aim.sdk.index_manager import RepoIndexManager

        run_hash = self._run.hash
        repo = self._run.repo
        self._run.close()
        try:  # aim >= 3.29: a closed run is invisible to readers until indexed
            with _exclusive(Path(self._repo_path) / ".aim-index.lock"):  # one writer of the index at a time
                RepoIndexManager.get_index_manager(repo).index(run_hash)
        except Exception as exc:  # indexing is a convenience; `aim up` indexes too
            _log.warning("Aim run %s saved but not indexed (%s); `aim up` will index it", run_hash, exc)


class AimTracker:
    """Aim runs in the repo at ``log_dir`` under experiment ``experiment``."""

    def __init__(self, log_dir: Path, experiment: str) -> None:
        self.log_dir, self.experiment = Path(log_dir), experiment

    def start(self, name: str, hparams: dict[str, Any]) -> TrackedRun:
        from aim import Run

        _ensure_repo(self.log_dir)
        run = Run(repo=str(self.log_dir), experiment=self.experiment, log_system_params=False,
                  system_tracking_interval=None, capture_terminal_logs=False)
        run.name = name
        run["hparams"] = hparams
        return _AimRun(run, str(self.log_dir))


def _ensure_repo(log_dir: Path) -> None:
    """Create the Aim repo at ``log_dir`` once, even when several workers start on a new folder at once.

    Aim's own creation is not safe against that: a process opening the repo while another is still
    creating it fails with "repository ... is out of date". Creation runs under an exclusive file lock.
    """
    from aim import Repo

    if (log_dir / ".aim" / "VERSION").exists():
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(log_dir / ".aim-init.lock"):
        if not (log_dir / ".aim" / "VERSION").exists():
            Repo.from_path(str(log_dir), init=True)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` across processes (POSIX flock; no-op where there is none)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def make_tracker(log_dir: Path | None, experiment: str) -> Tracker:
    """Aim when ``log_dir`` is given and Aim imports; otherwise a NullTracker (with one warning)."""
    if log_dir is None:
        return NullTracker()
    try:
        import aim  # noqa: F401
    except ImportError:
        warnings.warn("aim is not installed (it has no wheel for this Python): tracking is off",
                      stacklevel=2)
        return NullTracker()
    return AimTracker(log_dir, experiment)


def log_to(run: TrackedRun) -> Callable[[dict[str, float]], None]:
    """A ``fine_tune`` log hook that tracks the training loss, learning rate and gradient norm (subset=train)."""

    def on_log(record: dict[str, float]) -> None:
        for key in ("loss", "learning_rate", "grad_norm"):
            if key in record:
                run.track(key, record[key], step=int(record["step"]), subset="train", epoch=record.get("epoch"))

    return on_log
