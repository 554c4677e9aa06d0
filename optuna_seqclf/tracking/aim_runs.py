"""Aim: one run per trial, confirmation run, replica and ensemble, all of a study under one experiment name.

Aim has no parent runs: the study is the experiment. With aim 3.29 a closed run is not readable
(``Repo.iter_runs``, the UI) until it is indexed, so ``close`` indexes it explicitly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from optuna_seqclf.errors import TrackingError, first_line
from optuna_seqclf.tracking.base import NoStudyRun

_log = logging.getLogger(__name__)


class _AimRun:
    """An Aim run, created at its first ``track`` (or at ``close``): by then the repo set-up is done."""

    def __init__(self, tracker: AimTracker, name: str, hparams: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self._tracker, self._name, self._hparams, self._tags = tracker, name, hparams, tags
        self._run: Any = None
        self._failed = False

    def _aim_run(self) -> Any:
        if self._run is None:
            try:
                self._run = self._tracker.open_run(self._name, self._hparams)
                for key, value in self._tags.items():  # Aim has no tags: attributes, beside the hparams
                    self._run[key] = value
            except Exception as exc:
                self._failed = True
                raise TrackingError(f"{self._tracker.log_dir}: Aim run {self._name} could not be created "
                                    f"({type(exc).__name__}: {first_line(exc)})") from exc
        return self._run

    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None:
        self._aim_run().track(float(value), name=name, step=step, epoch=epoch, context={"subset": subset})

    def note(self, name: str, value: str) -> None:
        if not self._failed:  # a run Aim could not create said so where it was first needed
            self._aim_run()[name] = value

    def attach(self, path: Path, folder: str | None = None) -> None:
        pass  # Aim keeps no files without an artifact store of its own; the files are in the replica's folder

    def close(self, state: str = "COMPLETE") -> None:
        from aim.sdk.index_manager import RepoIndexManager

        if self._failed:  # the error was raised where the run was first needed
            return
        run = self._aim_run()
        run["state"] = state
        run_hash, repo = run.hash, run.repo
        run.close()
        try:  # aim >= 3.29: a closed run is invisible to readers until indexed
            with _exclusive(self._tracker.log_dir / ".aim-index.lock"):  # one writer of the index at a time
                RepoIndexManager.get_index_manager(repo).index(run_hash)
        except Exception as exc:  # indexing is a convenience; `aim up` indexes too
            _log.warning("Aim run %s saved but not indexed (%s); `aim up` will index it", run_hash, exc)


class AimTracker(NoStudyRun):  # Aim has no parent runs: the study is the experiment
    """Aim runs in the repo at ``log_dir`` under experiment ``experiment``.

    Aim takes ~1.3 s to set up a new repo (its database migrations run in a child process). That starts
    in the background as soon as the tracker is made, and a run is only created at its first use, so the
    set-up overlaps tokenising and the first model load instead of adding to them.
    """

    def __init__(self, log_dir: Path, experiment: str) -> None:
        self.log_dir, self.experiment = Path(log_dir), experiment
        self._repo_ready: Future[None] = Future()
        if _repo_exists(self.log_dir):
            self._repo_ready.set_result(None)
        else:
            self._repo_ready = _in_background(_ensure_repo, self.log_dir)

    def start(self, name: str, hparams: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> _AimRun:
        return _AimRun(self, name, hparams, tags or {})

    def open_run(self, name: str, hparams: Mapping[str, Any]) -> Any:
        """A new ``aim.Run`` (once the repo exists), named and with its hyperparameters set."""
        from aim import Run

        self._repo_ready.result()  # raises what the repo set-up raised
        run = Run(repo=str(self.log_dir), experiment=self.experiment, log_system_params=False,
                  system_tracking_interval=None, capture_terminal_logs=False)
        run.name = name
        run["hparams"] = dict(hparams)
        return run


def aim_installed() -> bool:
    try:
        import aim  # noqa: F401
    except ImportError:
        return False
    return True


def _in_background(work: Callable[[Path], None], path: Path) -> Future[None]:
    """``work(path)`` in a thread of its own; the future holds its outcome. Not a daemon: an exit waits
    for it, so a repo is never left half set up."""
    future: Future[None] = Future()

    def run() -> None:
        try:
            work(path)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name=f"aim-setup-{path.name}").start()
    return future


def _ensure_repo(log_dir: Path) -> None:
    """Create the Aim repo at ``log_dir`` once, even when several workers start on a new folder at once.

    Aim's own creation is not safe against that: a process opening the repo while another is still
    creating it fails with "repository ... is out of date". Creation runs under an exclusive file lock.
    """
    from aim import Repo

    if _repo_exists(log_dir):
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(log_dir / ".aim-init.lock"):
        if not _repo_exists(log_dir):
            Repo.from_path(str(log_dir), init=True)


def _repo_exists(log_dir: Path) -> bool:
    return (log_dir / ".aim" / "VERSION").exists()  # Aim writes VERSION last when it sets up a repo


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
