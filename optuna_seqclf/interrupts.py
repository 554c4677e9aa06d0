"""Ctrl-C (and SIGTERM, as a scheduler sends on preemption) that stops at a safe point.

The only module that touches signals.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class InterruptGate:
    """Ctrl-C stops at the next safe point, never in the middle of Optuna's or SQLite's bookkeeping.

    Raising KeyboardInterrupt from a signal handler lands wherever the main thread happens to be: inside a
    storage write (leaving the trial RUNNING), inside a ``__del__`` (where Python swallows it and training
    goes on), or inside a thread pool join. So the handler only records the request; ``check`` raises it
    at points we choose: after every training step (the ``on_step`` hook of ``training.loop.fine_tune``) and
    between trials.
    A second Ctrl-C raises at once.
    """

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def gated_interrupts() -> Iterator[InterruptGate]:
    """Install an ``InterruptGate`` as the SIGINT and SIGTERM handler for the duration of the block."""
    gate = InterruptGate()
    try:
        previous = {sig: signal.signal(sig, gate.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield gate
        return
    try:
        yield gate
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
