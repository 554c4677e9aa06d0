"""Callbacks the library calls while it works; the command line wires them to the terminal.

A leaf: imports nothing of ours, so every module can take a hook without importing who provides it.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]  # one line per event: a trial finished, a replica written
StepHook = Callable[[int, int], None]  # (steps done, steps in all), after every optimizer step; may raise to stop
EpochHook = Callable[[int, dict[str, float]], None]  # (epoch, dev metrics) after every epoch; may raise to stop
LogHook = Callable[[dict[str, float]], None]  # {"loss", "learning_rate", "grad_norm", "step", "epoch"}


def silent(_: str) -> None:
    """A ``Progress`` that says nothing."""
