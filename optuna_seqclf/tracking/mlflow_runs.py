"""MLflow: an experiment per study, the study a parent run, and each grid trial, confirmation run, replica and the
ensemble a nested child run of it (the ``mlflow.parentRunId`` tag, as MLflow's UI nests them).

Every call goes through ``mlflow_server.MlflowServer``: a failure is one warning, never an error (the study goes
on; the trial's result is in the study either way). Metrics of the training steps are buffered and sent in
batches, at each dev evaluation and at the end of the run.

Several processes (workers, machines) share the study's parent run: each looks it up by its ``role`` tag, and
when two create one at the same moment the oldest wins and the others delete theirs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optuna_seqclf.errors import redact
from optuna_seqclf.hooks import Progress
from optuna_seqclf.tracking.mlflow_server import MlflowServer, absolute_uri

PARENT_TAG = "mlflow.parentRunId"
# the MLflow run status of each way a run can end (``runs.RUN_STATES``)
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "INFEASIBLE": "FAILED",
          "INTERRUPTED": "KILLED"}
SUBSET_PREFIX = {"eval": "dev", "train": "train", "test": "test"}  # metric keys: dev_f1, train_loss, test_f1
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
BUFFERED = 500  # training steps' metrics sent at once at most: under MLflow's 1000 a batch


class MlflowTracker:
    """The study ``experiment`` in MLflow at ``uri``: its experiment and parent run are found (or made) in the
    background as soon as the tracker is made."""

    def __init__(self, uri: str, experiment: str, warn: Progress) -> None:
        self.uri, self.experiment = absolute_uri(uri), experiment
        self.server = MlflowServer(self.uri, warn, then=self._open_study)
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
            if key in finished:  # the study's own run has no key
                _end(self.server, run_id, {"state": finished[key], "settled": "its process stopped before the run "
                                           f"ended; the study recorded the trial as {finished[key]}"}, "KILLED")

    def finish(self, state: str) -> None:
        """The study's run ends (FINISHED, or KILLED/FAILED when the command was interrupted or failed)."""
        ids = self.ids()
        if ids is not None:
            status = STATUS.get(state, "FINISHED")
            self.server.call("closing the study's run", lambda c: c.set_terminated(ids[1], status))

    def study_run(self) -> dict[str, str] | None:
        ids = self.ids()
        # kept on the study (which optuna-dashboard shows): without a password
        return None if ids is None else {"uri": redact(self.uri), "experiment_id": ids[0], "run_id": ids[1]}


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
        if subset != "train" or len(self._buffer) >= BUFFERED:  # train steps wait for the next evaluation
            self._flush()

    def _flush(self) -> None:
        run_id, metrics = self._id, self._buffer
        if run_id is None or not metrics:
            return
        self._buffer = []
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
        _end(self._server, run_id, {"state": state}, STATUS.get(state, "FAILED"))


def _end(server: MlflowServer, run_id: str, tags: Mapping[str, str], status: str) -> None:
    """A run's last tags (its state), then its end with MLflow's ``status``."""
    batch = _tags(tags)
    server.call("tagging how a run ended", lambda c: c.log_batch(run_id, tags=batch))
    server.call("ending a run", lambda c: c.set_terminated(run_id, status))


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
