"""A study: what it was built from (``StudyRecord``), creating or resuming it, its pruner and its sampler.

The exactly-once protocol is ``study.queue``'s, the stored names ``study.schema``'s, storage URLs
``study.storage``'s; one worker's loop over the grid is ``tuning.worker``, the chosen point
``study.selection``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seqclf.errors import StudyError
from optuna_seqclf.settings import DataSpec, HParams, LoraSettings, Metric, SearchSpace, StudySpec, TrainSettings
from optuna_seqclf.study.confirm import ConfirmPlan
from optuna_seqclf.study.queue import GRID_ORDER, enqueue_untaken, grid_order
from optuna_seqclf.study.schema import POINT_ATTR, RECORD_ATTR


@dataclass(frozen=True)
class StudyRecord:
    """What a study was built from; stored on the study so ``train`` and resumes can rely on it.

    Composed of the specs the study was tuned with; stored flat (``to_json``), as every version has.
    """

    data: DataSpec  # data_dir resolved to an absolute path
    settings: TrainSettings
    space: SearchSpace
    config_name: str
    task_name: str
    data_fingerprint: str
    metric: str = "dev_macro_f1"
    grid_order: str = "shuffled"  # what studies made before "promising-first" used; kept on resume
    # The confirmation stage (``confirm``); not part of the identity: a resume may change it. Studies made
    # before it read as 0 (off), what they did.
    confirm_top: int = 0
    confirm_seeds: int = 0
    max_retries: int = 2  # when a failed run is given up: `train` and `report` read the stage's state with it
    # Where trials keep their weights (``study.artifacts``; "none": nowhere, as studies made before it)
    artifact_store: str = "none"

    # Stored fields that make trials comparable: a resume must agree on all of them.
    IDENTITY = ("data_fingerprint", "model", "tokenizer", "batch_sizes", "learning_rates", "epochs",
                "max_steps", "max_seq_length", "seed", "batching", "metric", "text_column", "label_column",
                "text_pair_column", "task", "label_separator", "label_columns", "thresholds", "lora")

    @classmethod
    def build(cls, spec: StudySpec, data: DataSpec, settings: TrainSettings, space: SearchSpace,
              fingerprint: str) -> StudyRecord:
        return cls(replace(data, data_dir=data.data_dir.resolve()), settings, space, spec.config_name,
                   spec.task_name, fingerprint, Metric.for_task(spec.metric, settings.task).stored, GRID_ORDER,
                   spec.confirm_top, spec.confirm_seeds, spec.max_retries, spec.artifact_store or "none")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StudyRecord:
        # studies made before --task read as single-label, with the reading options' defaults
        columns = raw.get("label_columns")
        data = DataSpec(Path(raw["data_dir"]), raw["text_column"], raw["label_column"], raw["text_pair_column"],
                        raw.get("label_separator", ","), tuple(columns) if columns is not None else None)
        settings = TrainSettings(model=raw["model"], tokenizer=raw["tokenizer"], epochs=raw["epochs"],
                                 max_steps=raw["max_steps"], max_seq_length=raw["max_seq_length"], seed=raw["seed"],
                                 # studies made before --batching trained length-grouped batches
                                 batching=raw.get("batching", "grouped"), task=raw.get("task", "single-label"),
                                 thresholds=raw.get("thresholds", "fixed"),
                                 lora=LoraSettings(**raw["lora"]) if raw.get("lora") else None)
        space = SearchSpace(tuple(raw["batch_sizes"]), tuple(raw["learning_rates"]))
        return cls(data, settings, space, raw["config_name"], raw["task_name"], raw["data_fingerprint"],
                   raw.get("metric", "dev_macro_f1"), raw.get("grid_order", "shuffled"),
                   int(raw.get("confirm_top", 0)), int(raw.get("confirm_seeds", 0)), int(raw.get("max_retries", 2)),
                   str(raw.get("artifact_store", "none")))

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudyRecord:
        raw = study.user_attrs.get(RECORD_ATTR)
        if not isinstance(raw, dict):
            raise StudyError(f"study {study.study_name!r} was not created by optuna-seqclf (no {RECORD_ATTR!r} record)")
        return cls.from_json(raw)

    def to_json(self) -> dict[str, Any]:
        flat = {"data_dir": str(self.data.data_dir), "text_column": self.data.text_column,
                "label_column": self.data.label_column, "text_pair_column": self.data.text_pair_column,
                "label_separator": self.data.label_separator,
                "label_columns": None if self.data.label_columns is None else list(self.data.label_columns),
                **asdict(self.settings), "batch_sizes": list(self.space.batch_sizes),
                "learning_rates": list(self.space.learning_rates), "config_name": self.config_name,
                "task_name": self.task_name, "data_fingerprint": self.data_fingerprint, "metric": self.metric,
                "grid_order": self.grid_order, "confirm_top": self.confirm_top, "confirm_seeds": self.confirm_seeds,
                "max_retries": self.max_retries, "artifact_store": self.artifact_store}
        return json.loads(json.dumps(flat))

    def differences(self, other: StudyRecord) -> list[str]:
        """What differs, in words a user can act on (the data by folder, not by hash)."""
        mine, theirs = self.to_json(), other.to_json()
        out = []
        for name in self.IDENTITY:
            old, new = mine[name], theirs[name]
            if old == new:
                continue
            if name == "data_fingerprint":
                where = (f"the study was tuned on {mine['data_dir']}" if mine["data_dir"] != theirs["data_dir"]
                         else f"the files in {theirs['data_dir']} changed since the study was tuned")
                out.append(f"data: {where}")
            elif name in ("batch_sizes", "learning_rates"):
                out.append(f"{name.replace('_', ' ')}: study has {_short(old)}, now {_short(new)}")
            else:
                out.append(f"{name}: study has {old!r}, now {new!r}")
        return out

    @property
    def objective(self) -> Metric:
        """What the study maximises (``--metric``)."""
        return Metric.of_record(self.metric)

    def confirm_plan(self) -> ConfirmPlan:
        return ConfirmPlan.of(self.confirm_top, self.confirm_seeds, self.settings.seed)

    def order(self) -> list[HParams]:
        """The grid in the order its first pass trains it."""
        return grid_order(self.space, self.settings.seed, self.grid_order)


def _short(values: list[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


class QueuedGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler for a grid whose points come from the trial queue (``study.queue``).

    The sampler names the grid (optuna-dashboard shows it) and served the first pass of studies made
    before the queue. Its ``after_trial`` only stops ``optimize`` once every grid id it handed out is
    done, which means nothing for one trial per ``optimize`` call, and it reads the ``grid_id`` of
    trials it never handed out (a KeyError for queued trials on a one-point grid), so it is skipped.
    """

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass


def grid_sampler(record: StudyRecord) -> optuna.samplers.GridSampler:
    """The study's sampler: its grid, with the seed it was created with."""
    return QueuedGridSampler(record.space.as_grid(), seed=record.settings.seed)


def make_pruner(name: str, epochs: float, points: int) -> optuna.pruners.BasePruner:
    """Pruners act on the dev metric reported after each epoch (a trial's steps are its epochs).

    ``median``: stop a trial whose dev score after epoch k is below the median of earlier trials at epoch k,
    once ``points // 8`` trials (2 to 5) have completed: on a small grid, 5 full trials would already
    be most of its budget. ``halving``: successive halving (ASHA) with rungs at epochs 1, 3, 9...: a
    trial goes past a rung only while its dev score there is in the top third of all trials that reached
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


def create_or_resume(spec: StudySpec, record: StudyRecord, storage: optuna.storages.BaseStorage,
                     *, accept_changes: bool = False) -> optuna.Study:
    """Create the study with its grid queued, or load it and refuse to mix trials built from other inputs."""
    pruner = make_pruner(spec.pruner, record.settings.epochs, len(record.space))
    exists = any(s.study_name == spec.study_name for s in optuna.get_all_study_summaries(storage=storage))
    if not exists:
        try:
            study = optuna.create_study(study_name=spec.study_name, storage=storage, sampler=grid_sampler(record),
                                        pruner=pruner, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another machine created it a moment ago: load it below
        else:
            enqueue_untaken(study, record.order())
            with warnings.catch_warnings():  # "experimental"; it names the objective in optuna-dashboard
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([f"dev {record.objective.label}"])
            study.set_user_attr(RECORD_ATTR, record.to_json())  # last: resumers wait for it, then see the queue
            return study
    study = optuna.load_study(study_name=spec.study_name, storage=storage, pruner=pruner)
    stored = _wait_for_record(study)
    diffs = stored.differences(record)
    if stored.metric != record.metric:  # trial values on two scales cannot be compared, whatever the user accepts
        raise StudyError(f"study {spec.study_name!r} maximises dev {stored.objective.label}, not "
                         f"{record.objective.label} (--metric {record.objective.name}); give another --study-name")
    if diffs and not accept_changes:
        raise StudyError(
            f"study {spec.study_name!r} was tuned with other inputs ({'; '.join(diffs)}); "
            "use another --study-name (or --task-name), or --accept-changes to continue it anyway"
        )
    if diffs or (stored.confirm_plan(), stored.max_retries, stored.artifact_store) != \
            (record.confirm_plan(), record.max_retries, record.artifact_store):
        # this call's stage and store settings apply from now (they are not part of the identity)
        study.set_user_attr(RECORD_ATTR, replace(record, grid_order=stored.grid_order).to_json())
        stored = StudyRecord.from_study(study)
    study.sampler = grid_sampler(stored)
    if len(study.get_trials(deepcopy=False)) < len(stored.space):
        enqueue_untaken(study, stored.order())  # a study made before the queue, or a creator that died
    return study


def _wait_for_record(study: optuna.Study, timeout_s: float = 15.0) -> StudyRecord:
    """The study's record; the creator of a new study sets it once the grid is queued."""
    deadline = time.monotonic() + timeout_s
    while RECORD_ATTR not in study.user_attrs and time.monotonic() < deadline:
        trials = study.get_trials(deepcopy=False)
        if any(t.state != TrialState.WAITING or POINT_ATTR not in t.user_attrs for t in trials):
            break  # trials that are not our queue: a study of somebody else's, never ours
        time.sleep(0.2)
    return StudyRecord.from_study(study)
