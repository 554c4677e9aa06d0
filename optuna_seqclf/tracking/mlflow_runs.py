"""MLflow: an experiment per study, the study a parent run, and each grid trial, confirmation run, replica and the
ensemble a nested child run of it (the ``mlflow.parentRunId`` tag, as MLflow's UI nests them).

Through ``MlflowClient`` only: MLflow's fluent API keeps an active run per process, a global this library must
not set behind its caller's back. Every call goes through ``_Server.call``: a failure is one warning and MLflow
is left alone for ``RETRY_S`` (the study goes on; the trial's result is in the study either way). Metrics of the
training steps are buffered and sent in batches, at each dev evaluation and at the end of the run.

Several processes (workers, machines) share the study's parent run: each looks it up by its ``role`` tag, and
when two create one at the same moment the oldest wins and the others delete theirs.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from optuna_seqclf.errors import ConfigError, first_line
from optuna_seqclf.hooks import Progress

RETRY_S = 60.0  # after a failed call, how long MLflow is left alone before the next try
PARENT_TAG = "mlflow.parentRunId"
# the MLflow run status of each way a run can end (``runs.RUN_STATES``)
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "INFEASIBLE": "FAILED",
          "INTERRUPTED": "KILLED"}
SUBSET_PREFIX = {"eval": "dev", "train": "train", "test": "test"}  # metric keys: dev_f1, train_loss, test_f1
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
_T = TypeVar("_T")


def check_mlflow(uri: str) -> None:
    """MLflow importable, and ``uri`` usable: a SQLite file's folder writable, a server answering."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("tracker mlflow: MLflow is not installed; pip install 'optuna-seqclf[mlflow]'",
                          "tracker") from None
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"mlflow_uri {uri}: {folder} is not a writable folder", "mlflow_uri")
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)


def _check_server(uri: str) -> None:
    """A GET of the server's /health; any HTTP answer means something listens (a proxy may ask for a login)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"mlflow_uri {uri}: no MLflow tracking server answers there ({reason}); start one "
                          "(`mlflow server --backend-store-uri sqlite:///mlflow.db`) or give another URI",
                          "mlflow_uri") from None


def absolute_uri(uri: str) -> str:
    """A SQLite URI with its path made absolute (workers and ``report`` may run in another folder)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).expanduser().resolve())
    return uri


class _Server:
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
            self._warn(f"MLflow at {self.uri}: no client ({type(exc).__name__}: {first_line(exc)[:200]}); "
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
            self._warn(f"MLflow at {self.uri}: {what} failed ({type(exc).__name__}: {first_line(exc)[:200]}); "
                       f"the study goes on, with MLflow left alone for {RETRY_S:.0f} s")
            return None


class MlflowTracker:
    """The study ``experiment`` in MLflow at ``uri``: its experiment and parent run are found (or made) in the
    background as soon as the tracker is made."""

    def __init__(self, uri: str, experiment: str, warn: Progress) -> None:
        self.uri, self.experiment = absolute_uri(uri), experiment
        self.server = _Server(self.uri, warn, then=self._open_study)
        self._ids: tuple[str, str] | None = None  # (experiment id, the study's run id)

    def ids(self) -> tuple[str, str] | None:
        """(experiment id, the study's run id): the background's, once it is done; None while MLflow fails."""
        if self._ids is None:
            self._ids = self.server.first.result()
            if self._ids is None:  # the background's attempt failed: again, unless MLflow failed just now
                self._ids = self.server.call("opening the study's run", self._open_study)
        return self._ids

    def _open_study(self, client: Any) -> tuple[str, str]:
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(self.experiment, tags={"optuna_study": self.experiment})
            except Exception:  # made by another worker a moment ago
                experiment = client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            if experiment.lifecycle_stage == "deleted":
                raise RuntimeError(f"experiment {self.experiment!r} is deleted in MLflow: restore it "
                                   "(`mlflow experiments restore`) or remove it for good (`mlflow gc`)")
            experiment_id = experiment.experiment_id
        found = _study_runs(client, experiment_id)
        if not found:
            mine = client.create_run(experiment_id, run_name=self.experiment, tags={"role": "study"}).info.run_id
            found = _study_runs(client, experiment_id)
            if found[0].info.run_id != mine:  # another process made one at the same moment: the oldest wins
                client.delete_run(mine)
        elif found[0].info.status != "RUNNING":  # tuned again, or its replicas trained: running again
            client.update_run(found[0].info.run_id, status="RUNNING")
        return experiment_id, found[0].info.run_id

    def start(self, name: str, hparams: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> _MlflowRun:
        """A child run: made now when MLflow is set up (a trial killed early still has its run), else at its first
        use (the first trial of a process does not wait for the set-up)."""
        run = _MlflowRun(self, name.split("/", 1)[-1], hparams, dict(tags or {}))
        if self.server.first.done():
            run.open()
        return run

    def settle(self, finished: Mapping[str, str]) -> None:
        """Runs still RUNNING whose ``key`` is in ``finished``: their process died (kill -9, preemption); the
        study has given them ``finished[key]``, MLflow marks them KILLED."""
        ids = self.ids()
        if ids is None or not finished:
            return
        running: list[Any] = self.server.call("looking for runs left running", lambda c: c.search_runs(
            [ids[0]], filter_string="attributes.status = 'RUNNING'", max_results=5000)) or []
        for run in running:
            key, run_id = str(run.data.tags.get("key")), run.info.run_id
            if key in finished and run_id != ids[1]:
                self._kill(run_id, finished[key])

    def _kill(self, run_id: str, state: str) -> None:
        tags = _tags({"state": state, "settled": "its process stopped before the run ended; the study recorded "
                                                 f"the trial as {state}"})
        self.server.call("settling a run", lambda c: c.log_batch(run_id, tags=tags))
        self.server.call("settling a run", lambda c: c.set_terminated(run_id, "KILLED"))

    def finish(self, state: str) -> None:
        """The study's run ends (FINISHED, or KILLED/FAILED when the command was interrupted or failed)."""
        ids = self.ids()
        if ids is not None:
            status = STATUS.get(state, "FINISHED")
            self.server.call("closing the study's run", lambda c: c.set_terminated(ids[1], status))

    def study_run(self) -> dict[str, str] | None:
        ids = self.ids()
        return None if ids is None else {"uri": self.uri, "experiment_id": ids[0], "run_id": ids[1]}


def _study_runs(client: Any, experiment_id: str) -> list[Any]:
    return list(client.search_runs([experiment_id], filter_string="tags.role = 'study'",
                                   order_by=["attributes.start_time ASC", "attributes.run_id ASC"]))


class _MlflowRun:
    """A child run of the study's run, created by ``open`` or at its first use; a run MLflow could not create
    tracks nothing (a warning said so)."""

    def __init__(self, tracker: MlflowTracker, name: str, hparams: Mapping[str, Any], tags: dict[str, str]) -> None:
        self._tracker, self._server, self._name = tracker, tracker.server, name
        self._hparams, self._tags = hparams, tags
        self._id: str | None = None
        self._opened = False
        self._buffer: list[Any] = []  # mlflow.entities.Metric

    def open(self) -> None:
        self._run_id()

    def _run_id(self) -> str | None:
        if not self._opened:
            self._opened = True
            self._id = self._create()
        return self._id

    def _create(self) -> str | None:
        ids, name, tags = self._tracker.ids(), self._name, self._tags
        if ids is None:
            return None
        run = self._server.call(f"starting run {name}", lambda c: c.create_run(
            ids[0], run_name=name, tags={PARENT_TAG: ids[1], **tags}))
        if run is None:
            return None
        run_id, params = run.info.run_id, _params(self._hparams)
        self._server.call(f"logging the parameters of {name}", lambda c: c.log_batch(run_id, params=params))
        return str(run_id)

    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None:
        if self._run_id() is None:
            return
        from mlflow.entities import Metric

        key = f"{SUBSET_PREFIX.get(subset, subset)}_{name}"
        self._buffer.append(Metric(key, float(value), int(time.time() * 1000), int(step)))
        if subset != "train" or len(self._buffer) >= 500:  # train steps wait for the next evaluation
            self._flush()

    def _flush(self) -> None:
        run_id = self._id
        if run_id is None or not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a batch
            self._send(run_id, batch[start:start + 1000])

    def _send(self, run_id: str, metrics: list[Any]) -> None:
        self._server.call("logging metrics", lambda c: c.log_batch(run_id, metrics=metrics))

    def note(self, name: str, value: str) -> None:
        if (run_id := self._run_id()) is not None:
            self._server.call(f"tagging {name}", lambda c: c.set_tag(run_id, name, _text(value)))

    def attach(self, path: Path, folder: str | None = None) -> None:
        if (run_id := self._run_id()) is not None:
            self._server.call(f"keeping {Path(path).name}", lambda c: c.log_artifact(run_id, str(path), folder))

    def close(self, state: str = "COMPLETE") -> None:
        if (run_id := self._run_id()) is None:
            return
        self._flush()
        self._server.call("tagging the state", lambda c: c.set_tag(run_id, "state", state))
        self._server.call("ending a run", lambda c: c.set_terminated(run_id, STATUS.get(state, "FAILED")))


def attach_to_study_run(where: Mapping[str, str], files: list[Path], folder: str, warn: Progress) -> bool:
    """Keep ``files`` in the study's run ``where`` (``MlflowTracker.study_run``) under ``folder``; False (after
    a warning) if they could not be."""
    server = _Server(where["uri"], warn)
    return all(_keep(server, where["run_id"], file, folder) for file in files)


def _keep(server: _Server, run_id: str, file: Path, folder: str) -> bool:
    server.call(f"keeping {file.name}", lambda c: c.log_artifact(run_id, str(file), folder))
    return server.last_ok


def _params(hparams: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(key, _text(value)) for key, value in hparams.items()]


def _text(value: Any) -> str:
    """A parameter or tag value as MLflow keeps it: a string (lists and dicts as JSON), cut to its limit."""
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text[:MAX_PARAM_CHARS]


def _tags(tags: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, _text(value)) for key, value in tags.items()]
