"""MLflow's client as the package uses it: a failing server is one warning, then left alone for a while; values
and URIs as MLflow keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def test_a_tracking_server_that_fails_is_one_warning_then_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from optuna_seqclf.tracking import mlflow_server

    warnings: list[str] = []
    server = mlflow_server.MlflowServer("http://127.0.0.1:9", warnings.append)
    calls = []

    def refused(client: Any) -> None:
        calls.append(client)
        raise ConnectionError("connection refused")

    assert server.call("logging metrics", refused) is None and not server.last_ok
    assert server.call("logging metrics", refused) is None  # not even tried: left alone for RETRY_S
    assert len(calls) == 1 and type(calls[0]).__name__ == "MlflowClient"
    assert warnings == ["MLflow at http://127.0.0.1:9: logging metrics failed (ConnectionError: connection "
                        "refused); the study goes on, with MLflow left alone for 60 s"]
    now = mlflow_server.time.monotonic()
    monkeypatch.setattr(mlflow_server.time, "monotonic", lambda: now + mlflow_server.RETRY_S + 1)
    assert server.call("logging metrics", lambda client: "back") == "back" and server.last_ok  # tried again: works


def test_mlflow_values_are_strings_within_its_limit() -> None:
    pytest.importorskip("mlflow")
    from optuna_seqclf.tracking.mlflow_runs import MAX_PARAM_CHARS, _text
    from optuna_seqclf.tracking.mlflow_server import absolute_uri

    assert _text([1, 2]) == "[1, 2]" and _text({"rank": 8}) == '{"rank": 8}' and _text(1e-4) == "0.0001"
    assert len(_text("x" * 10_000)) == MAX_PARAM_CHARS
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{Path('mlflow.db').resolve()}"
    assert absolute_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_uri("http://h:5000") == "http://h:5000"
