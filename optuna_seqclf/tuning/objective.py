"""The Optuna objective: Trial -> HParams -> fine_tune -> the dev metric (``--metric``; macro-F1 by default).

The only module that touches a live ``optuna.Trial``. Dev macro-F1, accuracy, micro-F1, MCC, loss and the F1 of
each class go on the trial as user attributes; a run-time error is recorded on the trial (``error``) before
it fails, so ``tune`` can report it and retry the point.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from optuna_seqclf.errors import first_line
from optuna_seqclf.hooks import EpochHook, Progress, StepHook, silent
from optuna_seqclf.settings import HParams, MachineSettings, Metric, SearchSpace, TrainSettings
from optuna_seqclf.study.artifacts import KeptWeights, upload_weights, worth_keeping
from optuna_seqclf.study.queue import TrialResult, is_overflow, owner_of
from optuna_seqclf.study.schema import (
    CONFIRM_SEED_ATTR,
    DEV_ACCURACY_ATTR,
    DEV_CLASS_F1_ATTR,
    DEV_F1_ATTR,
    DEV_LOSS_ATTR,
    DEV_MCC_ATTR,
    DEV_METRICS_ATTR,
    DEV_MICRO_F1_ATTR,
    DUPLICATE_ATTR,
    ERROR_ATTR,
    EVAL_RUNTIME_ATTR,
    FAILED_RUN_ATTR,
    HISTORY_ATTR,
    INFEASIBLE_ATTR,
    KEEP_ERROR_ATTR,
    MICRO_BATCH_ATTR,
    PRUNED_AFTER_ATTR,
    TRAIN_LOSS_ATTR,
    TRAIN_RUNTIME_ATTR,
)
from optuna_seqclf.study.tracked import earlier_attempts
from optuna_seqclf.tracking import TrackedRun, Tracker, log_to
from optuna_seqclf.training.loop import FineTuneResult, Trainer, fine_tune, planned_epochs
from optuna_seqclf.training.memory import Infeasible, fit_in_memory
from optuna_seqclf.training.model import save_weights, trained_on
from optuna_seqclf.training.prepared import Prepared

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


def suggest_hparams(trial: optuna.Trial, space: SearchSpace) -> HParams:
    return HParams(
        int(trial.suggest_categorical("batch_size", list(space.batch_sizes))),
        float(trial.suggest_categorical("learning_rate", list(space.learning_rates))),
    )


@dataclass
class Objective:
    prepared: Prepared
    settings: TrainSettings
    machine: MachineSettings
    space: SearchSpace
    tracker: Tracker
    study_name: str
    on_step: StepHook | None = None
    metric: Metric = field(default_factory=Metric)
    trainer: Trainer = fine_tune  # what trains the trial's (point, seed); tests give a scripted one
    store: ArtifactStore | None = None  # where a trial that could be chosen keeps its weights (``study.artifacts``)
    progress: Progress = silent  # what a trial says while it runs (an out-of-memory retry)

    def __call__(self, trial: optuna.Trial) -> float:
        hp, confirm_seed = self._claim(trial)
        seed = self.settings.seed if confirm_seed is None else confirm_seed
        run = self._start_run(trial, hp, confirm_seed)
        encoded = self.prepared.encoded(self.settings.max_seq_length)

        def train(machine: MachineSettings) -> FineTuneResult:
            return self.trainer(
                self.settings.model, self.prepared.tokenizer, encoded.train, encoded.dev,
                self.prepared.corpus.id2label, hp, self.settings, seed, machine=machine,
                # a confirmation run is never pruned: its full-length score is what it is for
                on_epoch=_after_epoch(trial, run, self.metric, prune=confirm_seed is None,
                                      last_epoch=planned_epochs(self.settings, len(encoded.train), hp.batch_size)),
                on_step=self.on_step,
                on_log=log_to(run),
            )

        result, used, failed = self._train_tracked(trial, run, train, hp)
        metrics = _record(trial, result, failed)
        if self.store is not None and result.model is not None:
            nan = float("nan")
            self._keep_weights(trial, TrialResult(trial.number, hp, metrics[self.metric.key],
                                                  metrics.get("accuracy", nan), metrics.get("micro_f1", nan),
                                                  metrics["loss"], (), failed),
                               result, seed, confirming=confirm_seed is not None, machine=used)
        return metrics[self.metric.key]

    def _start_run(self, trial: optuna.Trial, hp: HParams, confirm_seed: int | None) -> TrackedRun:
        try:
            return self.tracker.start(f"{self.study_name}/trial-{trial.number}",
                                      self._hparams(trial, hp, confirm_seed), self._tags(trial, hp, confirm_seed))
        except Exception as exc:  # recorded, so `studies`/`report` say why the point failed
            trial.set_user_attr(ERROR_ATTR, f"tracking: {type(exc).__name__}: {first_line(exc)}")
            raise

    def _train_tracked(self, trial: optuna.Trial, run: TrackedRun, train: Callable[[MachineSettings], FineTuneResult],
                       hp: HParams) -> tuple[FineTuneResult, MachineSettings, str | None]:
        """``train`` (again with half the micro-batch when out of memory: ``training.memory``); how it ended on the
        trial and on its run. The trained result, the machine settings it fitted with, its failed-run mark."""
        state = "INTERRUPTED"  # how the run ends, for the trackers: unless one of these says otherwise
        try:  # out of memory: the same point again with half the micro-batch (``training.memory``)
            result, used = fit_in_memory(train, self.machine, hp.batch_size, self.progress)
            trial.set_user_attr(MICRO_BATCH_ATTR, used.micro_batch_size)
        except optuna.TrialPruned:
            state = "PRUNED"
            run.note("pruned_after", str(trial.user_attrs.get(PRUNED_AFTER_ATTR, "")))
            raise
        except Infeasible as exc:
            state = "INFEASIBLE"
            trial.set_user_attr(INFEASIBLE_ATTR, str(exc))
            _error(trial, run, f"infeasible: {exc}")
            raise
        except Exception as exc:
            state = "FAIL"
            _error(trial, run, f"{type(exc).__name__}: {first_line(exc)}")
            raise
        else:
            state = "COMPLETE"
            failed = self.prepared.failed_run(result.dev)
            _track_final(run, result, failed, used.micro_batch_size, _per_epoch(self.metric))
        finally:
            run.close(state)
        return result, used, failed

    def _keep_weights(self, trial: optuna.Trial, candidate: TrialResult, result: FineTuneResult, seed: int,
                      confirming: bool, machine: MachineSettings) -> None:
        """Upload the weights of a trial that could be chosen, before it completes (``study.artifacts``). A
        failed upload costs the reuse, never the trial: ``train`` trains that replica, saying why."""
        assert self.store is not None
        if not worth_keeping(trial.study, candidate, confirming):
            return
        try:
            with tempfile.TemporaryDirectory(prefix="seqclf-weights-") as tmp:
                file = save_weights(result.model, Path(tmp)).rename(Path(tmp) / f"trial-{trial.number}-seed-{seed}"
                                                                                   ".safetensors")
                upload_weights(trial, self.store, file, KeptWeights(
                    "", "", 0, seed, asdict(self.settings), self.prepared.corpus.fingerprint,
                    trained_on(machine), dict(result.train_metrics), list(result.log_history)))
        except Exception as exc:
            trial.set_user_attr(KEEP_ERROR_ATTR, f"{type(exc).__name__}: {first_line(exc)}")

    def _claim(self, trial: optuna.Trial) -> tuple[HParams, int | None]:
        """The trial's grid point and confirmation seed (None: a grid trial); a trial whose (point, seed) is
        not its own to train is pruned as a duplicate."""
        if is_overflow(trial.number, trial.user_attrs, self.space):
            trial.set_user_attr(DUPLICATE_ATTR, "beyond the grid")
            raise optuna.TrialPruned("the grid's first pass was already handed out to other trials")
        hp = suggest_hparams(trial, self.space)
        seed = trial.user_attrs.get(CONFIRM_SEED_ATTR)
        owner = owner_of(trial.study, trial.number, hp, seed)
        if owner is not None:
            trial.set_user_attr(DUPLICATE_ATTR, owner)
            raise optuna.TrialPruned(f"grid point already taken by trial {owner}")
        return hp, seed

    def _hparams(self, trial: optuna.Trial, hp: HParams, confirm_seed: int | None) -> dict[str, Any]:
        s = self.settings
        return {
            "study": self.study_name, "trial": trial.number, "model": s.model, "batch_size": hp.batch_size,
            "learning_rate": hp.learning_rate, "seed": s.seed if confirm_seed is None else confirm_seed,
            "epochs": s.epochs, "max_steps": s.max_steps, "max_seq_length": s.max_seq_length,
            "batching": s.batching, "task": s.task, "metric": self.metric.key,
            "stage": "grid" if confirm_seed is None else "confirm",
            **({"lora": asdict(s.lora)} if s.lora is not None else {}),
        }

    def _tags(self, trial: optuna.Trial, hp: HParams, confirm_seed: int | None) -> dict[str, str]:
        """What the trackers tag the trial's run with: its key (``Tracker.settle``), stage, and, for a point
        trained again after a failed try (a crash, a kill), which trial it retries."""
        tags = {"role": "trial", "key": f"trial-{trial.number}", "trial": str(trial.number),
                "stage": "grid" if confirm_seed is None else "confirm"}
        earlier = earlier_attempts(trial.study, trial.number, hp, confirm_seed)
        if earlier:
            tags.update(retry_of=str(earlier[-1]), attempt=str(len(earlier) + 1))
        return tags


def _error(trial: optuna.Trial, run: TrackedRun, error: str) -> None:
    """Why the trial failed, one line, on the trial (``studies``, ``report``) and on its run."""
    trial.set_user_attr(ERROR_ATTR, error)
    run.note("error", error)


def _per_epoch(metric: Metric) -> tuple[str, ...]:
    """The dev metrics a trial tracks after every epoch (those its task has)."""
    return tuple(dict.fromkeys(("f1", "accuracy", "loss", metric.key)))


def _track_final(run: TrackedRun, result: FineTuneResult, failed: str | None, micro_batch_size: int | None,
                 tracked: tuple[str, ...]) -> None:
    """The finished trial's final figures on its run: the dev metrics not ``tracked`` per epoch, the training
    time, the failed-run mark (empty: not a failed run), the micro-batch used."""
    epoch = int(result.train_metrics.get("epoch", 0))
    for name, value in result.dev.metrics.items():
        if name not in tracked:
            run.track(name, value, step=epoch, subset="eval")
    run.track("runtime", result.train_metrics.get("train_runtime", 0.0), step=epoch, subset="train")
    run.note("failed_run", failed or "")
    if micro_batch_size is not None:
        run.note("micro_batch_size", str(micro_batch_size))


def _record(trial: optuna.Trial, result: FineTuneResult, failed: str | None) -> dict[str, float]:
    """The trial's dev scores, failed-run mark and timings as user attributes; its dev metrics."""
    if failed is not None:
        trial.set_user_attr(FAILED_RUN_ATTR, failed)
    metrics = result.dev.metrics
    # the scores every task's tables read, where the task has them (regression has no F1 nor accuracy); all
    # of them in DEV_METRICS_ATTR
    for name, key in ((DEV_ACCURACY_ATTR, "accuracy"), (DEV_MICRO_F1_ATTR, "micro_f1"), (DEV_F1_ATTR, "f1"),
                      (DEV_MCC_ATTR, "mcc")):
        if key in metrics:
            trial.set_user_attr(name, metrics[key])
    for name, value in ((DEV_METRICS_ATTR, metrics), (DEV_CLASS_F1_ATTR, result.dev.per_class_f1),
                        (DEV_LOSS_ATTR, metrics["loss"]), (EVAL_RUNTIME_ATTR, result.eval_seconds),
                        (TRAIN_RUNTIME_ATTR, result.train_metrics.get("train_runtime", 0.0)),
                        (TRAIN_LOSS_ATTR, result.train_metrics.get("train_loss", float("nan")))):
        trial.set_user_attr(name, value)
    return metrics


def _after_epoch(trial: optuna.Trial, run: TrackedRun, metric: Metric, *, prune: bool = True,
                 last_epoch: int | None = None) -> EpochHook:
    """Track the epoch's dev metrics, report the objective's metric to Optuna (learning curves, pruners), maybe
    prune: never after ``last_epoch``, when the trial has been trained in full and pruning saves nothing (it would
    throw away a finished score and its weights)."""
    history: list[dict[str, float]] = []
    wanted = _per_epoch(metric)

    def after_epoch(epoch: int, metrics: dict[str, float]) -> None:
        names = [name for name in wanted if name in metrics]  # regression has no F1 nor accuracy
        for name in names:
            run.track(name, metrics[name], step=epoch, subset="eval", epoch=epoch)
        trial.report(metrics[metric.key], epoch)  # optuna-dashboard draws intermediate values as learning curves
        history.append({"epoch": epoch, **{k: metrics[k] for k in names}})
        trial.set_user_attr(HISTORY_ATTR, history)
        if prune and (last_epoch is None or epoch < last_epoch) and trial.should_prune():
            trial.set_user_attr(PRUNED_AFTER_ATTR, epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch} with dev {metric.label} "
                                     f"{metrics[metric.key]:.4f}")

    return after_epoch
