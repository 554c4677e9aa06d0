"""Where studies live: storage URLs, SQLite checks and WAL mode, password redaction, local locks.

Optuna's RDB storage is opened here and nowhere else, with heartbeats on (how trials of dead workers get
failed on PostgreSQL), calls retried through database restarts (``reconnect``) and one-line ``StudyError``s
for every way a storage can be unusable.

On SQLite a WAITING trial is claimed under an exclusive ``flock`` (``SQLiteStorage``): Optuna's claim reads
the trial's state and then writes RUNNING, and pysqlite runs that read outside the write's transaction
(SQLite ignores ``SELECT ... FOR UPDATE``), so two processes could both claim one queued trial. PostgreSQL
locks the row itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from optuna_seqclf.errors import ConfigError, StudyError, first_line, redact
from optuna_seqclf.study.reconnect import ResilientStorage

HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: a running trial whose worker sent no heartbeat for the
    grace period is failed and its point trained again. ``SEQCLF_HEARTBEAT_INTERVAL`` and
    ``SEQCLF_GRACE_PERIOD`` change them (every worker of a study should use the same; docs/studies.md)."""
    values = []
    for name, default in (("SEQCLF_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL_S), ("SEQCLF_GRACE_PERIOD", GRACE_PERIOD_S)):
        raw = os.environ.get(name, "")
        try:
            value = int(raw) if raw.strip() else default
        except ValueError:
            raise ConfigError(f"${name} {raw!r}: a whole number of seconds") from None
        if value <= 0:
            raise ConfigError(f"${name} {raw!r}: must be above 0")
        values.append(value)
    interval, grace = values
    if grace <= interval:
        raise ConfigError(f"$SEQCLF_GRACE_PERIOD ({grace} s) must be longer than the heartbeat interval ({interval} s)")
    return interval, grace


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the RUNNING trials whose worker sent no heartbeat for the grace period (Optuna marks the call
    experimental; it is how dead workers' points come back)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def live_worker_wait_s() -> float:
    """How long a worker with nothing left waits on points other workers hold: past it, a dead worker's trial
    has gone stale (and is trained again), so a trial still running belongs to a live worker."""
    interval, grace = heartbeat_settings()
    return grace + 2 * interval


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL, or None for other storages and in-memory SQLite."""
    if not url.startswith("sqlite:"):
        return None
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        raise ConfigError(f"--storage {url!r}: a SQLite URL looks like sqlite:///studies/NAME.db")
    return Path(url[len("sqlite:///"):])


def _check_sqlite_file(path: Path) -> None:
    if path.is_dir():
        raise StudyError(f"{path}: is a folder, not a SQLite study file")
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise StudyError(f"{path}: is not a SQLite database; pass another --storage or --study-name")
    if not path.parent.is_dir():
        raise StudyError(f"{path.parent}: folder for the SQLite study does not exist")


def open_storage(url: str, *, create_dirs: bool = False, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats; raises StudyError (one line) when it cannot be used.

    ``must_exist``: a SQLite file is only read, never created (for commands that need a tuned study).
    """
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise ConfigError(
            f"--storage {url!r}: not a database URL; use sqlite:///studies/NAME.db or "
            "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
        )
    if scheme == "postgres" or url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, our postgres extra
    path = sqlite_path(url)
    engine_kwargs: dict[str, Any]
    if path is not None:
        if must_exist and not path.is_file():
            raise StudyError(f"{path}: no such study file; run `optuna-seqclf tune` first, or pass --storage")
        if create_dirs and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        _check_sqlite_file(path)
        # Several local workers write to one file: wait for the lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        # A worker holds at most 2 connections at once (its trials, its heartbeat thread): a small pool keeps
        # N workers well under the server's max_connections. Pings before use and recycling under an hour
        # replace connections a restart or an idle timeout dropped (optuna#5600, #622).
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True, "pool_size": 2,
                         "max_overflow": 2, "pool_recycle": 1800}
    try:
        storage = _rdb_storage(url, engine_kwargs)
        if path is not None:
            _use_wal(path)
        return storage
    except ModuleNotFoundError as exc:
        raise StudyError(f"--storage {redact(url)}: driver {exc.name!r} is not installed "
                         "(pip install 'optuna-seqclf[postgres]')") from None
    except Exception as exc:
        raise StudyError(f"--storage {redact(url)}: cannot open the storage ({first_line(exc)})") from None


class SQLiteStorage(ResilientStorage):
    """An RDBStorage whose WAITING -> RUNNING claim is atomic across the processes sharing the file.

    Measured before this class: 4 processes popping 200 queued trials from one SQLite study claimed 227,
    27 of them twice (Optuna 5.1). The lock file sits beside the database, which SQLite needs on a local
    disk anyway; the class pickles by reference, so worker processes keep it.
    """

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        if state != TrialState.RUNNING:
            return super().set_trial_state_values(trial_id, state, values)
        path = sqlite_path(self.url)
        assert path is not None
        fd = os.open(path.with_name(path.name + ".claim"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return super().set_trial_state_values(trial_id, state, values)
        finally:
            os.close(fd)  # closing releases the lock


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], attempts: int = 6) -> optuna.storages.RDBStorage:
    """RDBStorage, retried when another worker is creating the same tables at the same moment."""
    import sqlalchemy.exc

    kind = SQLiteStorage if url.startswith("sqlite:") else ResilientStorage
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental"; they are how dead trials get failed
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                interval, grace = heartbeat_settings()
                return kind(url, engine_kwargs=engine_kwargs, heartbeat_interval=interval, grace_period=grace)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            racing = "already exists" in str(exc) or "duplicate key" in str(exc)
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _use_wal(path: Path) -> None:
    """Write-ahead logging: readers (the dashboard, `studies`) never block the workers' writes.

    The mode is stored in the file; it needs a local disk, which SQLite studies need anyway.
    """
    import sqlite3

    with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
        con.execute("PRAGMA journal_mode=WAL")


@contextlib.contextmanager
def local_study_lock(url: str) -> Iterator[bool]:
    """Hold a shared lock on a SQLite study while we use it; yield True when we were alone at start.

    Being alone means every RUNNING trial in the file belongs to a dead process.
    """
    path = sqlite_path(url)
    if path is None:
        yield False
        return
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(fd, fcntl.LOCK_SH)  # converts the exclusive lock, or waits for no writer
        yield alone
    finally:
        os.close(fd)


def local_storages(studies_dir: Path = Path("studies")) -> list[str]:
    """The SQLite storages in ``studies_dir`` (the default home of studies)."""
    if not studies_dir.is_dir():
        return []
    return [f"sqlite:///{p}" for p in sorted(studies_dir.glob("*.db")) if p.is_file()]


def load_study(study_name: str, storage: optuna.storages.BaseStorage, url: str,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
        hint = f" (studies there: {', '.join(names)})" if names else " (it holds no study)"
        raise StudyError(f"no study {study_name!r} in {redact(url)}{hint}; run `optuna-seqclf tune` first") from None
