"""The protocols every tracker follows (``runs`` explains a run's life), and the no-ops of a tracker that keeps no
run of the study itself (Aim; tracking nothing)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


class TrackedRun(Protocol):
    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None: ...

    def note(self, name: str, value: str) -> None: ...  # a tag (Aim: an attribute beside the hparams)

    def attach(self, path: Path, folder: str | None = None) -> None: ...  # a file kept with the run

    def close(self, state: str = "COMPLETE") -> None: ...  # one of RUN_STATES


class Tracker(Protocol):
    def start(self, name: str, hparams: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> TrackedRun: ...

    def settle(self, finished: Mapping[str, str]) -> None:
        """Close the runs left open by processes that died, whose ``key`` tag is in ``finished`` (run key ->
        the state the study gave them)."""

    def finish(self, state: str) -> None: ...  # the study's own run, when nothing else runs in it

    def study_run(self) -> dict[str, str] | None: ...  # where the study's run is, for the report (MLflow)


class NoStudyRun:
    """A tracker with no run of the study itself: nothing to settle, finish or point at."""

    def settle(self, finished: Mapping[str, str]) -> None:
        pass

    def finish(self, state: str) -> None:
        pass

    def study_run(self) -> dict[str, str] | None:
        return None
