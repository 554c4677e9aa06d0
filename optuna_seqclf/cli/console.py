"""Progress on the terminal: event lines on stderr, and a live step bar only when stderr is a terminal.

In a CI log or a file (not a TTY) only whole lines are written, so logs stay readable; ``--quiet``
silences both. The library never prints: it calls ``line`` and ``step``, which the CLI wires here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import click

from optuna_seqclf.hooks import StepHook

_BAR_WIDTH = 24


class Console:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        # sys.stderr at call time: CliRunner swaps it (click 8.5 deprecates get_text_stream)
        self.stream = stream if stream is not None else sys.stderr
        self.live = not quiet and _isatty(self.stream)
        self._bar_visible = False
        self._started = 0.0
        self._last_done = 0

    def line(self, message: str) -> None:
        """One event (a trial finished, a replica written); clears a step bar first."""
        if self.quiet:
            return
        self._clear_bar()
        click.echo(message, file=self.stream)

    @property
    def progress(self) -> Callable[[str], None] | None:
        """``line``, or None under ``--quiet`` (so worker processes stay quiet too)."""
        return None if self.quiet else self.line

    @property
    def step_hook(self) -> StepHook | None:
        """``step`` on a terminal, None elsewhere (so nothing is even called per step)."""
        return self.step if self.live else None

    @property
    def count_hook(self) -> Callable[[int], None] | None:
        """``count`` on a terminal, None elsewhere."""
        return self.count if self.live else None

    def count(self, done: int) -> None:
        """Redraw ``1,234,567 examples  8,123 examples/s`` in place (``predict``, whose total is unknown)."""
        if not self._bar_visible or done < self._last_done:
            self._started, self._last_done = time.monotonic(), 0
        self._last_done = done
        elapsed = time.monotonic() - self._started
        rate = f"  {done / elapsed:,.0f} examples/s" if elapsed > 0 else ""
        self.stream.write(f"\r  {done:,} examples{rate}\033[K")
        self.stream.flush()
        self._bar_visible = True

    def done(self) -> None:
        """Clear a bar left on the terminal."""
        self._clear_bar()

    def step(self, done: int, total: int) -> None:
        """Redraw ``step 40/250 [#####      ] 16%  3.1 steps/s, 1:07 left`` in place."""
        if done <= self._last_done or done == 1:  # a new trial or replica started
            self._started = time.monotonic()
        self._last_done = done
        elapsed = time.monotonic() - self._started
        rate = (done - 1) / elapsed if elapsed > 0 and done > 1 else 0.0
        fraction = done / total if total > 0 else 0.0
        filled = int(_BAR_WIDTH * fraction)
        left = f", {_clock((total - done) / rate)} left" if rate > 0 else ""
        speed = f"  {rate:.1f} steps/s{left}" if rate > 0 else ""
        self.stream.write(f"\r  step {done}/{total} [{'#' * filled}{' ' * (_BAR_WIDTH - filled)}] "
                          f"{fraction:4.0%}{speed}\033[K")
        self.stream.flush()
        self._bar_visible = True

    def _clear_bar(self) -> None:
        if self._bar_visible:
            self.stream.write("\r\033[K")
            self._bar_visible = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
