"""What a worker does next, as a type: the answers of the queue (grid points) and of the confirmation stage.

``TrainQueued``: a queued trial waits, train it. ``TrainPoint``: enqueue this point (with ``seed``, a
confirmation run of it) and train it. ``Wait``: what is left depends on trials other workers are running,
ask again soon. ``Done``: nothing is left to train.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna_seqclf.settings import HParams


@dataclass(frozen=True)
class TrainQueued:
    """A trial waits in the queue: ``optimize`` takes it."""


@dataclass(frozen=True)
class TrainPoint:
    """Enqueue ``point`` (a grid trial; with ``seed``, a confirmation run) and train it."""

    point: HParams
    seed: int | None = None


@dataclass(frozen=True)
class Wait:
    """The next runs depend on trials other workers are running: ask again soon."""


@dataclass(frozen=True)
class Done:
    """Nothing is left to train."""


Step = TrainQueued | TrainPoint | Wait | Done
