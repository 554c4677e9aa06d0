"""optuna-dashboard for a study's storage. The only module importing optuna_dashboard.

SQLite and a live study: the dashboard reads while workers write. Studies are opened in WAL mode (see
``storage.open_storage``), where readers never block a writer, and every connection waits up to 60 s for a
lock instead of failing with "database is locked".
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from optuna_seqclf.errors import ConfigError, DashboardError, StudyError, redact
from optuna_seqclf.study.artifacts import reading_store
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.storage import open_storage

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


def check_port(host: str, port: int) -> None:
    """Fail with one line, before starting, when ``host:port`` cannot be bound."""
    if not 0 < port < 65536:
        raise ConfigError(f"port {port}: use a port number from 1 to 65535", "port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"host {host!r}: cannot be resolved ({exc.strerror})", "host") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise DashboardError(f"{host}:{port}: cannot serve the dashboard there ({exc.strerror}); "
                             "pick another --port") from None


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080,
          announce: Callable[[str], None] | None = None, study_name: str | None = None) -> None:
    """Serve optuna-dashboard for ``storage_url`` until Ctrl-C (blocks).

    ``announce`` gets the address to open once the storage and the port have been checked. The trials'
    kept weights can be downloaded from the dashboard when the artifact store of ``study_name`` (or of the
    storage's only study) is on this machine.
    """
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise DashboardError("optuna-dashboard is not installed: pip install optuna-dashboard") from None
    storage = open_storage(storage_url, must_exist=True)
    check_port(host, port)
    if announce is not None:
        announce(url_of(storage_url, host, port))
    run_server(storage, host=host, port=port, artifact_store=_artifact_store(storage, study_name))


def _artifact_store(storage: optuna.storages.BaseStorage, study_name: str | None) -> ArtifactStore | None:
    names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
    name = study_name if study_name in names else names[0] if len(names) == 1 else None
    if name is None:
        return None
    try:
        spec = StudyRecord.from_study(optuna.load_study(study_name=name, storage=storage)).artifact_store
    except StudyError:  # not a study of ours
        return None
    return reading_store(spec, given=False)[0]


def url_of(storage_url: str, host: str, port: int) -> str:
    """What to open in a browser, and the storage it shows (password hidden)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/dashboard/ (storage {redact(storage_url)})"
