"""Storage, study creation and resume, and the tuning loop.

How "every grid point trained exactly once" is kept:

* Optuna's GridSampler gives trial number ``n`` grid point ``n`` for the first ``len(grid)`` trials, and
  the storage hands out trial numbers atomically, so a first pass, however many workers share it,
  covers every point once.
* A point whose trial failed, was interrupted, or was left RUNNING by a dead worker is retried by
  enqueuing exactly that point (GridSampler alone never retries: it counts FAIL as visited). A point
  that failed with an error ``max_retries + 1`` times is given up and reported.
* Before a worker trains a retried point it checks no other trial took it meanwhile (see objective).
* Trials left RUNNING by a dead process are failed at start-up when no other process uses the local
  SQLite file (an exclusive ``flock``), and otherwise by Optuna's heartbeats after a grace period.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .config import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings
from .errors import ConfigError, StudyError, first_line
from .interrupts import InterruptGate
from .objective import DUPLICATE_ATTR, ERROR_ATTR, claimed_point

RECORD_ATTR = "seqclf"
METRIC_NAME = "dev macro-F1"
REPLICAS_ATTR = "replicas"  # set by ``train``: where the replicas went and their scores
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyRecord:
    """What a study was built from; stored on the study so ``train`` and resumes can rely on it."""

    data_dir: str
    text_column: str
    label_column: str
    text_pair_column: str | None
    model: str
    tokenizer: str | None
    epochs: float
    max_steps: int | None
    max_seq_length: int
    seed: int
    batch_sizes: tuple[int, ...]
    learning_rates: tuple[float, ...]
    config_name: str
    task_name: str
    data_fingerprint: str
    metric: str = "dev_macro_f1"
    grid_order: str = "shuffled"  # what studies made before "promising-first" used; kept on resume

    # Fields that make trials comparable: a resume must agree on all of them.
    IDENTITY = ("data_fingerprint", "model", "tokenizer", "batch_sizes", "learning_rates", "epochs",
                "max_steps", "max_seq_length", "seed", "metric", "text_column", "label_column",
                "text_pair_column")

    @classmethod
    def build(cls, spec: StudySpec, data: DataSpec, settings: TrainSettings, space: SearchSpace,
              fingerprint: str) -> StudyRecord:
        return cls(
            data_dir=str(data.data_dir.resolve()), text_column=data.text_column,
            label_column=data.label_column, text_pair_column=data.text_pair_column,
            model=settings.model, tokenizer=settings.tokenizer, epochs=settings.epochs,
            max_steps=settings.max_steps, max_seq_length=settings.max_seq_length, seed=settings.seed,
            batch_sizes=space.batch_sizes, learning_rates=space.learning_rates,
            config_name=spec.config_name, task_name=spec.task_name, data_fingerprint=fingerprint,
            grid_order=GRID_ORDER,
        )

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudyRecord:
        raw = study.user_attrs.get(RECORD_ATTR)
        if not isinstance(raw, dict):
            raise StudyError(f"study {study.study_name!r} was not created by optuna-seqclf (no {RECORD_ATTR!r} record)")
        raw = dict(raw)
        raw["batch_sizes"] = tuple(raw["batch_sizes"])
        raw["learning_rates"] = tuple(raw["learning_rates"])
        return cls(**raw)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def differences(self, other: StudyRecord) -> list[str]:
        """What differs, in words a user can act on (the data by folder, not by hash)."""
        out = []
        for name in self.IDENTITY:
            old, new = getattr(self, name), getattr(other, name)
            if old == new:
                continue
            if name == "data_fingerprint":
                where = (f"the study was tuned on {self.data_dir}" if self.data_dir != other.data_dir
                         else f"the files in {other.data_dir} changed since the study was tuned")
                out.append(f"data: {where}")
            elif name in ("batch_sizes", "learning_rates"):
                out.append(f"{name.replace('_', ' ')}: study has {_short(old)}, now {_short(new)}")
            else:
                out.append(f"{name}: study has {old!r}, now {new!r}")
        return out

    def data_spec(self) -> DataSpec:
        return DataSpec(Path(self.data_dir), self.text_column, self.label_column, self.text_pair_column)

    def settings(self) -> TrainSettings:
        return TrainSettings(model=self.model, tokenizer=self.tokenizer, epochs=self.epochs,
                             max_steps=self.max_steps, max_seq_length=self.max_seq_length, seed=self.seed)

    def space(self) -> SearchSpace:
        return SearchSpace(self.batch_sizes, self.learning_rates)


def _short(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


# --- storage -----------------------------------------------------------------------------------

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
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
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


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], attempts: int = 6) -> optuna.storages.RDBStorage:
    """RDBStorage, retried when another worker is creating the same tables at the same moment."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental"; they are how dead trials get failed
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                )
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


def redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url



# A new study trains the grid from the settings most likely to be good outwards: BERT's authors recommend
# learning rates from 2e-5 to 5e-5 with batch sizes 16 or 32 for fine-tuning. Trained first, those points
# set a high bar early, so a pruner stops the far-off points after their first epoch: on both SST-2 grids
# of bench/pruning_replay.py, --pruner median then spends 32-38% of the exhaustive grid's steps (about
# 43-50% in random orders) and keeps its best point.
GRID_ORDER = "promising-first"
TYPICAL_LEARNING_RATE = 3e-5  # the middle of 2e-5..5e-5 on a log scale
TYPICAL_BATCH_SIZE = 16 * math.sqrt(2)  # between 16 and 32 on a log scale


def promise_rank(batch_size: int, learning_rate: float) -> tuple[float, float]:
    """How far a point lies from the typical fine-tuning settings (learning rate first): smaller is sooner."""
    return (round(abs(math.log10(learning_rate / TYPICAL_LEARNING_RATE)), 9),
            round(abs(math.log2(batch_size / TYPICAL_BATCH_SIZE)), 9))


class PromisingFirstGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler with its grid in ``promise_rank`` order (its seeded shuffle breaks the ties).

    GridSampler gives trial ``n`` the ``n``-th point of its grid, so this fixes the order of the first pass."""

    def __init__(self, search_space: dict[str, list[Any]], seed: int | None = None) -> None:
        super().__init__(search_space, seed=seed)
        names = self._param_names
        self._all_grids.sort(key=lambda values: promise_rank(**dict(zip(names, values))))


def grid_sampler(space: SearchSpace, seed: int, order: str = GRID_ORDER) -> optuna.samplers.GridSampler:
    """The grid in ``order``: ``promising-first`` (new studies) or ``shuffled`` (Optuna's seeded shuffle)."""
    if order == "shuffled":
        return optuna.samplers.GridSampler(space.as_grid(), seed=seed)
    if order == "promising-first":
        return PromisingFirstGridSampler(space.as_grid(), seed=seed)
    raise StudyError(f"unknown grid order {order!r} in the study's record; a newer optuna-seqclf made it?")


def study_sampler(study: optuna.Study) -> optuna.samplers.GridSampler:
    """The sampler of an existing study: its own grid, seed and order, as recorded when it was created."""
    record = StudyRecord.from_study(study)
    return grid_sampler(record.space(), record.seed, record.grid_order)


def make_pruner(name: str, epochs: float, points: int) -> optuna.pruners.BasePruner:
    """Pruners act on the dev F1 reported after each epoch (a trial's steps are its epochs).

    ``median``: stop a trial whose dev F1 after epoch k is below the median of earlier trials at epoch k,
    once ``points // 8`` trials (2 to 5) have completed: on a small grid, 5 full trials would already
    be most of its budget. ``halving``: successive halving (ASHA) with rungs at epochs 1, 3, 9...: a
    trial goes past a rung only while its dev F1 there is in the top third of all trials that reached
    it. ``hyperband``: several successive-halving brackets from 1 epoch to all epochs.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, points // 8)), n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3,
                                                      min_early_stopping_rate=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, math.ceil(epochs)),
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


def load_study(study_name: str, storage: optuna.storages.BaseStorage, url: str,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
        hint = f" (studies there: {', '.join(names)})" if names else " (it holds no study)"
        raise StudyError(f"no study {study_name!r} in {redact(url)}{hint}; run `optuna-seqclf tune` first") from None


def create_or_resume(spec: StudySpec, record: StudyRecord, storage: optuna.storages.BaseStorage,
                     *, accept_changes: bool = False) -> optuna.Study:
    """Create the study, or load it and refuse to mix trials built from different inputs."""
    sampler = grid_sampler(record.space(), record.seed, record.grid_order)
    pruner = make_pruner(spec.pruner, record.epochs, len(record.space()))
    exists = any(s.study_name == spec.study_name for s in optuna.get_all_study_summaries(storage=storage))
    if not exists:
        try:
            study = optuna.create_study(study_name=spec.study_name, storage=storage, sampler=sampler,
                                        pruner=pruner, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another machine created it a moment ago: load it below
        else:
            study.set_user_attr(RECORD_ATTR, record.to_json())
            with warnings.catch_warnings():  # "experimental"; it names the objective in optuna-dashboard
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([METRIC_NAME])
            return study
    study = optuna.load_study(study_name=spec.study_name, storage=storage, sampler=sampler, pruner=pruner)
    stored = _wait_for_record(study)
    diffs = stored.differences(record)
    if diffs and not accept_changes:
        raise StudyError(
            f"study {spec.study_name!r} was tuned with other inputs ({'; '.join(diffs)}); "
            "use another --study-name (or --task-name), or --accept-changes to continue it anyway"
        )
    if diffs:
        study.set_user_attr(RECORD_ATTR, replace(record, grid_order=stored.grid_order).to_json())
    study.sampler = study_sampler(study)  # the order it was created with, which trial numbers refer to
    return study


def _wait_for_record(study: optuna.Study, timeout_s: float = 15.0) -> StudyRecord:
    """The study's record; a study created by a racing worker gets it a moment after creation."""
    deadline = time.monotonic() + timeout_s
    while RECORD_ATTR not in study.user_attrs and not study.get_trials(deepcopy=False):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return StudyRecord.from_study(study)


# --- resume ------------------------------------------------------------------------------------

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


def recover_interrupted(study: optuna.Study, *, alone: bool) -> list[int]:
    """Fail RUNNING trials of dead workers so their points are retried; return their numbers."""
    if alone:
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in stale:
            study.tell(t.number, state=TrialState.FAIL)
        return [t.number for t in stale]
    optuna.storages.fail_stale_trials(study)  # only trials whose heartbeat stopped a grace period ago
    return []


@dataclass(frozen=True)
class PointStatus:
    point: HParams
    complete: FrozenTrial | None
    running: bool
    errors: tuple[str, ...]
    pruned: bool = False

    @property
    def finished(self) -> bool:
        """COMPLETE, or stopped early by a pruner: either way not trained again."""
        return self.complete is not None or self.pruned

    @property
    def state(self) -> str:
        if self.complete is not None:
            return "COMPLETE"
        if self.pruned:
            return "PRUNED"
        if self.running:
            return "RUNNING"
        if self.errors:
            return "FAIL"
        return "PENDING"


def point_status(study: optuna.Study, space: SearchSpace) -> list[PointStatus]:
    """The state of every grid point, in grid order (duplicates of a taken point are ignored)."""
    trials = [t for t in study.get_trials(deepcopy=False) if DUPLICATE_ATTR not in t.user_attrs]
    out = []
    for point in space.points():
        mine = [t for t in trials if claimed_point(t) == point]
        complete = [t for t in mine if t.state == TrialState.COMPLETE]
        out.append(PointStatus(
            point=point,
            complete=min(complete, key=lambda t: t.number) if complete else None,
            running=any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in mine),
            errors=tuple(str(t.user_attrs[ERROR_ATTR]) for t in mine
                         if t.state == TrialState.FAIL and ERROR_ATTR in t.user_attrs),
            pruned=any(t.state == TrialState.PRUNED for t in mine),
        ))
    return out


def next_point(study: optuna.Study, space: SearchSpace, max_retries: int) -> HParams | bool:
    """True: ask the GridSampler (first pass); a point: enqueue and train it; False: nothing left."""
    trials = study.get_trials(deepcopy=False)
    if len(trials) < len(space):
        return True
    for status in point_status(study, space):
        if not status.finished and not status.running and len(status.errors) <= max_retries:
            return status.point
    return False


# --- the loop ----------------------------------------------------------------------------------

@dataclass
class LoopStats:
    trained: int = 0
    failed: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)


def run_grid(study: optuna.Study, space: SearchSpace, objective: Callable[[optuna.Trial], float],
             max_retries: int, gate: InterruptGate, on_trial: Callable[[FrozenTrial], None] | None = None,
             ) -> LoopStats:
    """Train grid points one trial at a time until every point is complete or given up.

    ``objective`` should call ``gate.check`` while it trains (``Objective`` does, after every step).
    """
    stats = LoopStats()
    ran: list[int] = []

    def tracked(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        gate.check()
        return objective(trial)

    while (step := next_point(study, space, max_retries)) is not False:
        gate.check()
        if isinstance(step, HParams):
            study.enqueue_trial({"batch_size": step.batch_size, "learning_rate": step.learning_rate})
        ran.clear()
        # One trial per call: optimize() runs heartbeats and stale-trial checks for us, and marks the
        # trial FAIL before re-raising KeyboardInterrupt. `catch` keeps a crash from ending the grid.
        study.optimize(tracked, n_trials=1, catch=(Exception,), gc_after_trial=True)
        gate.check()
        if not ran:
            continue
        trial = study.get_trials(deepcopy=False)[ran[0]]
        if DUPLICATE_ATTR in trial.user_attrs:
            continue
        stats.trained += 1
        if trial.state == TrialState.FAIL:
            stats.failed.append(trial.number)
        if on_trial is not None:
            on_trial(trial)
    return stats
