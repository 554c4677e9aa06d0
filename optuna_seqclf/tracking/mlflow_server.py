"""MLflow's client as this package uses it: checked before anything trains, set up in the background, and every
call a warning at worst.

Through ``MlflowClient`` only: MLflow's fluent API keeps an active run per process, a global this library must
not set behind its caller's back. A failed call is one warning, and MLflow is left alone for ``RETRY_S``.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from optuna_seqclf.errors import ConfigError, first_line, redact
from optuna_seqclf.hooks import Progress

RETRY_S = 60.0  # after a failed call, how long MLflow is left alone before the next try
DATABASES = frozenset({"postgresql", "mysql", "mssql"})  # checked by connecting
# MLflow's other stores, not checked here (a SQLite database's folder: ``runs.check_tracking``, as Aim's folder)
OTHER_STORES = frozenset({"sqlite", "file", "databricks", "databricks-uc", "uc"})
_T = TypeVar("_T")


def check_mlflow(uri: str) -> None:
    """MLflow importable, and ``uri`` a store it has: a server answering, a database connected to."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("tracker mlflow: MLflow is not installed; pip install 'optuna-seqclf[mlflow]'",
                          "tracker") from None
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif _scheme(uri) in DATABASES:
        _check_database(uri)
    elif _scheme(uri) and _scheme(uri) not in OTHER_STORES:
        raise ConfigError(f"mlflow_uri {redact(uri)}: MLflow keeps no runs at {_scheme(uri)}:// URIs; give a database "
                          "(sqlite:///mlflow.db, postgresql://...) or a tracking server (http://HOST:PORT)",
                          "mlflow_uri")


def _scheme(uri: str) -> str:
    """``postgresql`` for ``postgresql+psycopg://...``; ``databricks`` for ``databricks`` and ``databricks://p``."""
    if uri.split(":", 1)[0] in OTHER_STORES:
        return uri.split(":", 1)[0]
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def _check_database(uri: str) -> None:
    """A connection to the database, closed at once: nothing is written (MLflow makes its tables later)."""
    import sqlalchemy

    try:
        sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool).connect().close()
    except Exception as exc:
        raise ConfigError(f"mlflow_uri {redact(uri)}: cannot connect ({type(exc).__name__}: {first_line(exc)[:200]})",
                          "mlflow_uri") from None


def _check_server(uri: str) -> None:
    """A GET of the server's /health; any HTTP answer means something listens (a proxy may ask for a login)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"mlflow_uri {redact(uri)}: no MLflow tracking server answers there ({reason}); start one "
                          "(`mlflow server --backend-store-uri sqlite:///mlflow.db`) or give another URI",
                          "mlflow_uri") from None


def absolute_uri(uri: str) -> str:
    """A SQLite URI with its path made absolute (workers and ``report`` may run in another folder)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).expanduser().resolve())
    return uri


class MlflowServer:
    """An ``MlflowClient`` whose failures are warnings (see the module's docstring). Made in a thread of its own,
    then ``then(client)`` (the study's run): importing mlflow takes 1.1-1.3 s and a client on a new SQLite database
    1.5 s more (its migrations; 0.6 s on one that exists), which overlap tokenising the data and the first
    trial's model load and steps instead of adding to the study (its run waits for its first metric)."""

    def __init__(self, uri: str, warn: Progress, then: Callable[[Any], _T] | None = None) -> None:
        self.uri, self._warn = uri, warn
        self._down_until = 0.0
        self.last_ok = False  # whether the last call went through
        self._client: Future[Any] = Future()
        self.first: Future[Any] = Future()  # what ``then`` gave, once the client is made
        threading.Thread(target=self._connect, args=(then,), name="mlflow-setup").start()

    def _connect(self, then: Callable[[Any], Any] | None) -> None:
        try:
            from mlflow import MlflowClient

            self._client.set_result(MlflowClient(tracking_uri=self.uri))
        except Exception as exc:
            self._client.set_result(None)
            self._warn(f"MLflow at {redact(self.uri)}: no client ({type(exc).__name__}: {first_line(exc)[:200]}); "
                       "the study goes on without MLflow")
        self.first.set_result(self.call("opening the study's run", then) if then is not None else None)

    def call(self, what: str, work: Callable[[Any], _T]) -> _T | None:
        """``work(client)``; None if it failed, or if MLflow failed less than ``RETRY_S`` ago."""
        self.last_ok = False
        client = self._client.result()
        if client is None or time.monotonic() < self._down_until:
            return None
        try:
            result = work(client)
            self.last_ok = True
            return result
        except Exception as exc:
            self._down_until = time.monotonic() + RETRY_S
            self._warn(f"MLflow at {redact(self.uri)}: {what} failed ({type(exc).__name__}: {first_line(exc)[:200]}); "
                       f"the study goes on, with MLflow left alone for {RETRY_S:.0f} s")
            return None


def attach_to_study_run(where: Mapping[str, str], files: list[Path], folder: str, warn: Progress) -> bool:
    """Keep ``files`` in the study's run ``where`` (``MlflowTracker.study_run``) under ``folder``; False (after
    a warning) if they could not be."""
    uri = where["uri"]
    if ":***@" in uri:  # the study keeps its URI without the password: the environment's, if it gives one
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri:
            warn(f"MLflow at {where['uri']}: set MLFLOW_TRACKING_URI (with the password) to keep the report there")
            return False
    server = MlflowServer(uri, warn)
    return all(_keep(server, where["run_id"], file, folder) for file in files)


def _keep(server: MlflowServer, run_id: str, file: Path, folder: str) -> bool:
    server.call(f"keeping {file.name}", lambda c: c.log_artifact(run_id, str(file), folder))
    return server.last_ok
