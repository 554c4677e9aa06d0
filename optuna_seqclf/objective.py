"""The Optuna objective: Trial -> HParams -> fine_tune -> dev macro-F1.

The only module that touches ``optuna.Trial``. Dev accuracy, micro-F1 and loss go on the trial as user
attributes; a run-time error is recorded on the trial (``error``) before it fails, so ``tune`` can report
it and retry the point.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from .config import HParams, SearchSpace, TrainSettings
from .errors import first_line
from .model import StepHook, fine_tune
from .tracking import Tracker, log_to

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .data import Corpus, EncodedSplits

ERROR_ATTR = "error"
DUPLICATE_ATTR = "duplicate_of"
FIXED_PARAMS = "fixed_params"  # Optuna's system attr on an enqueued trial
HISTORY_ATTR = "dev_history"  # [{"epoch", "f1", "accuracy", "loss"}, ...], one entry per epoch


def suggest_hparams(trial: optuna.Trial, space: SearchSpace) -> HParams:
    return HParams(
        int(trial.suggest_categorical("batch_size", list(space.batch_sizes))),
        float(trial.suggest_categorical("learning_rate", list(space.learning_rates))),
    )


def claimed_point(trial: optuna.trial.FrozenTrial) -> HParams | None:
    """The grid point a trial trains: its params, or the point it was enqueued with before it suggests them."""
    return HParams.of_trial(trial.params) or HParams.of_trial(trial.system_attrs.get(FIXED_PARAMS, {}))


def _is_overflow(trial: optuna.Trial, space: SearchSpace) -> bool:
    """A trial the GridSampler made beyond the grid's size (several workers saw the first pass unfinished).

    Its point would be a random one, maybe taken: such a trial trains nothing. Retries are enqueued, so
    they carry ``fixed_params`` and are never overflow.
    """
    if trial.number < len(space):
        return False
    mine = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    return FIXED_PARAMS not in mine.system_attrs


def _owner_of(trial: optuna.Trial, hp: HParams, wait_s: float = 30.0) -> int | None:
    """The number of an earlier trial already running or done for ``hp`` (a race between workers).

    An earlier trial that is running but has not said its point yet (it was created a moment ago) is
    waited for, up to ``wait_s`` (a worker that died right then costs that wait, not a duplicate).
    """
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    deadline = time.monotonic() + wait_s
    while True:
        earlier = [t for t in trial.study.get_trials(deepcopy=False, states=states) if t.number < trial.number]
        for other in earlier:
            if claimed_point(other) == hp:
                return other.number
        unknown = [t for t in earlier if t.state == optuna.trial.TrialState.RUNNING and claimed_point(t) is None]
        if not unknown or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


@dataclass
class Objective:
    corpus: Corpus
    encoded: EncodedSplits
    tokenizer: PreTrainedTokenizerBase
    settings: TrainSettings
    space: SearchSpace
    tracker: Tracker
    study_name: str
    on_epoch: Callable[[optuna.Trial, int, dict[str, float]], None] | None = None
    on_step: StepHook | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        if _is_overflow(trial, self.space):
            trial.set_user_attr(DUPLICATE_ATTR, "beyond the grid")
            raise optuna.TrialPruned("the grid's first pass was already handed out to other trials")
        hp = suggest_hparams(trial, self.space)
        owner = _owner_of(trial, hp)
        if owner is not None:
            trial.set_user_attr(DUPLICATE_ATTR, owner)
            raise optuna.TrialPruned(f"grid point already taken by trial {owner}")
        try:
            run = self.tracker.start(f"{self.study_name}/trial-{trial.number}", self._hparams(trial, hp))
        except Exception as exc:  # recorded, so `studies`/`report` say why the point failed
            trial.set_user_attr(ERROR_ATTR, f"tracking: {type(exc).__name__}: {first_line(exc)}")
            raise

        history: list[dict[str, float]] = []

        def after_epoch(epoch: int, metrics: dict[str, float]) -> None:
            for name in ("f1", "accuracy", "loss"):
                run.track(name, metrics[name], step=epoch, subset="eval", epoch=epoch)
            # Intermediate values: optuna-dashboard draws them as learning curves; pruners read them.
            trial.report(metrics["f1"], epoch)
            history.append({"epoch": epoch, **{k: metrics[k] for k in ("f1", "accuracy", "loss")}})
            trial.set_user_attr(HISTORY_ATTR, history)
            if trial.should_prune():  # never with the default pruner ("none")
                trial.set_user_attr("pruned_after_epoch", epoch)
                raise optuna.TrialPruned(f"pruned after epoch {epoch} with dev F1 {metrics['f1']:.4f}")
            if self.on_epoch is not None:
                self.on_epoch(trial, epoch, metrics)

        try:
            result = fine_tune(
                self.settings.model, self.tokenizer, self.encoded.train, self.encoded.dev,
                self.corpus.id2label, hp, self.settings, self.settings.seed,
                on_epoch=after_epoch, on_step=self.on_step, on_log=log_to(run),
            )
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {first_line(exc)}")
            raise
        finally:
            run.close()
        metrics = result.dev.metrics
        trial.set_user_attr("dev_accuracy", metrics["accuracy"])
        trial.set_user_attr("dev_micro_f1", metrics["micro_f1"])
        trial.set_user_attr("dev_loss", metrics["loss"])
        trial.set_user_attr("train_runtime", result.train_metrics.get("train_runtime", 0.0))
        trial.set_user_attr("eval_runtime", result.eval_seconds)
        trial.set_user_attr("train_loss", result.train_metrics.get("train_loss", float("nan")))
        return metrics["f1"]

    def _hparams(self, trial: optuna.Trial, hp: HParams) -> dict[str, Any]:
        s = self.settings
        return {
            "study": self.study_name, "trial": trial.number, "model": s.model, "batch_size": hp.batch_size,
            "learning_rate": hp.learning_rate, "seed": s.seed, "epochs": s.epochs,
            "max_steps": s.max_steps, "max_seq_length": s.max_seq_length,
        }
