"""Riding through database restarts: storage calls that lose their connection are retried with back-off.

PostgreSQL restarts for maintenance, drops idle connections, or is unreachable for a while; a worker should
neither crash nor lose a finished trial then. The pool pings a connection before using it (``pool_pre_ping``),
so a retried call gets a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import optuna

from optuna_seqclf.errors import ConfigError, StudyError, first_line, in_chain, redact

DB_RETRY_S = 600  # how long a worker keeps retrying an unreachable database before it gives up


def db_retry_s() -> float:
    """``SEQCLF_DB_RETRY_S`` or 600: past it, a worker stops with a one-line error (its study resumes later)."""
    raw = os.environ.get("SEQCLF_DB_RETRY_S", "")
    try:
        return float(raw) if raw.strip() else DB_RETRY_S
    except ValueError:
        raise ConfigError(f"$SEQCLF_DB_RETRY_S {raw!r}: a number of seconds") from None


def lost_connection(exc: BaseException) -> BaseException | None:
    """The error saying the database went away (restart, network, dropped idle connection), anywhere in the
    chain ``exc`` was raised from or while handling (Optuna re-raises it as StorageInternalError, sometimes
    after a failed rollback); None for any other error, such as a bad query."""
    import sqlalchemy.exc

    return in_chain(exc, lambda err: isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
                    or (isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated))


class ResilientStorage(optuna.storages.RDBStorage):
    """An RDBStorage that rides through a database restart: a call that loses its connection is retried with
    back-off (the pool pings connections before use, so the retry gets a fresh one) until it succeeds or
    ``db_retry_s`` has passed since the database was last reachable; then it raises a one-line StudyError, and
    every later call fails at once, so the worker exits and its study resumes when run again.

    Writes are safe to repeat: a state change whose commit reached the server before the connection dropped
    is recognised when repeated (the trial already has that state), and a trial created twice is a duplicate
    the grid's owner check prunes.
    """

    _unreachable_since: float | None = None
    _gave_up: str | None = None

    def _retrying(self, call: Any) -> Any:
        if self._gave_up is not None:
            raise StudyError(self._gave_up)
        delay, retried = 0.5, False
        while True:
            try:
                result = call()
            except optuna.exceptions.UpdateFinishedTrialError:
                if not retried:
                    raise
                return True  # our first attempt committed before its connection dropped
            except Exception as exc:
                lost = lost_connection(exc)
                if lost is None:
                    raise
                self.remove_session()  # the thread's session may hold a transaction that died with the connection
                now = time.monotonic()
                self._unreachable_since = self._unreachable_since or now
                if now - self._unreachable_since > db_retry_s():
                    self._gave_up = (f"the storage {redact(self.url)} has been unreachable for {db_retry_s():.0f} s "
                                     f"({first_line(lost)}); run `tune` again once it is back: the study resumes")
                    raise StudyError(self._gave_up) from None
                time.sleep(delay)
                delay, retried = min(delay * 2, 10.0), True
                continue
            self._unreachable_since = None
            return result


def _record_heartbeat(self: ResilientStorage, trial_id: int) -> None:
    """The heartbeat thread's call, retried too; once the storage gives up it stays silent (an exception in a
    thread would print a traceback): the worker's main thread reports the outage, on one line."""
    with contextlib.suppress(StudyError):
        self._retrying(lambda: optuna.storages.RDBStorage.record_heartbeat(self, trial_id))


# mypy forbids assigning to a method, and a function taking the subclass is narrower than the base's method
ResilientStorage.record_heartbeat = _record_heartbeat  # type: ignore[method-assign,assignment]


def _retried(name: str) -> Any:
    method = getattr(optuna.storages.RDBStorage, name)

    def wrapper(self: ResilientStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(lambda: method(self, *args, **kwargs))

    wrapper.__name__ = name
    return wrapper


# Every call that talks to the database (Optuna 4-5's RDBStorage), the heartbeat thread's too; a name a
# version lacks is skipped.
for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
              "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "create_new_trial", "set_trial_param", "get_trial_param", "set_trial_state_values",
              "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
              "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "get_best_trial",
              "_get_stale_trial_ids",
              # what Optuna's _CachedStorage (in front of every RDBStorage a Study uses) calls directly
              "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials"):
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(ResilientStorage, _name, _retried(_name))
