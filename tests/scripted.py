"""A scripted trainer: the ``Trainer`` seam's stand-in for ``fine_tune`` in protocol tests.

It trains nothing. Each (point, seed) gets the dev score its script gives, after the same hooks ``fine_tune``
calls (a step per batch of one epoch, ``on_epoch`` per epoch), so the study, the queue, retries, pruning,
confirmation and the replicas' bookkeeping run exactly as with real training, in milliseconds. It may fail
or die (``SystemExit``, as a kill -9 leaves a trial) on the calls a test names. An instance defined at module
level pickles by reference, so ``tune``'s worker processes can use one too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optuna_seqclf import HParams, MachineSettings, TrainSettings
from optuna_seqclf.training.loop import EvalResult, FineTuneResult

Score = Callable[[HParams, int], float]
Failure = Callable[[HParams, int, list[tuple[HParams, int]]], BaseException | None]


def by_point(hp: HParams, seed: int) -> float:
    """A smooth, seed-dependent score: best at learning rate 1e-3 and the smallest batch."""
    return round(0.9 - 0.05 * abs(math.log10(hp.learning_rate) + 3) - hp.batch_size / 1000 + seed / 10_000, 6)


@dataclass
class ScriptedTrainer:
    """``score(hp, seed)`` is the dev score of every metric; ``fail(hp, seed, calls)`` returns an exception to
    raise on this call (``calls``: every (hp, seed) so far, this one last), or None."""

    score: Score = by_point
    fail: Failure | None = None
    with_model: bool = False  # load the (untrained) model, for callers that save or evaluate it (replicas)
    step_seconds: float = 0.0  # each step sleeps this long, so a trial can be killed in its middle
    one_class: bool = False  # every dev prediction is the first class: every run is a failed run
    calls: list[tuple[HParams, int]] = field(default_factory=list)

    def __call__(self, model_name: str, tokenizer: Any, train: Any, dev: Any, id2label: dict[int, str],
                 hp: HParams, settings: TrainSettings, seed: int, *, machine: MachineSettings | None = None,
                 on_epoch: Any = None, on_step: Any = None, on_log: Any = None) -> FineTuneResult:
        self.calls.append((hp, seed))
        error = self.fail(hp, seed, self.calls) if self.fail is not None else None
        if error is not None:
            raise error
        labels = np.asarray(dev["labels"])
        value = self.score(hp, seed)
        metrics = {"f1": value, "micro_f1": value, "accuracy": value, "mcc": value, "loss": 1.0 - value}
        epochs = max(1, math.ceil(settings.epochs))
        steps = math.ceil(len(train) / hp.batch_size)
        history = []
        for epoch in range(1, epochs + 1):
            for step in range(steps):
                if self.step_seconds:
                    time.sleep(self.step_seconds)
                if on_step is not None:
                    on_step((epoch - 1) * steps + step + 1, epochs * steps)
            history.append(dict(metrics))
            if on_epoch is not None:
                on_epoch(epoch, metrics)
        # the predictions are the truth, so no run is flagged as failed however low its scripted score (unless
        # ``one_class``: then they are all the first class)
        predicted = np.zeros_like(labels) if self.one_class else labels
        dev_result = EvalResult(dict(metrics), predicted, np.eye(len(id2label))[predicted],
                                {name: value for name in id2label.values()})
        model = _load(model_name, id2label) if self.with_model else None
        return FineTuneResult(model, {"train_runtime": 0.01, "train_loss": 0.5, "epoch": float(epochs),
                                      "global_step": epochs * steps}, dev_result, history)


def _load(model_name: str, id2label: dict[int, str]) -> Any:
    from optuna_seqclf.training.model import load_model

    return load_model(model_name, id2label)


def _crash() -> BaseException:
    return RuntimeError("CUDA error: device-side assert triggered (simulated)")  # a crash, not out of memory


def fail_on(point: tuple[int, float] | None = None, times: int | None = None,
            error: Callable[[], BaseException] = _crash) -> Failure:
    """Fail the first ``times`` calls (all, when None) on ``point`` (any point, when None)."""
    def fail(hp: HParams, seed: int, calls: list[tuple[HParams, int]]) -> BaseException | None:
        if point is not None and (hp.batch_size, hp.learning_rate) != point:
            return None
        done = sum(1 for h, _ in calls if point is None or (h.batch_size, h.learning_rate) == point)
        return error() if times is None or done <= times else None

    return fail


def die_on_call(n: int) -> Failure:
    """Call ``n`` (from 1) dies as a kill -9 would leave it: ``SystemExit`` escapes Optuna, the trial stays
    RUNNING."""
    return lambda hp, seed, calls: SystemExit("killed") if len(calls) == n else None
