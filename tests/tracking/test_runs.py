"""``Tracking`` from the command line's words, several trackers as one, and a tracking server's failures as
warnings that never cost a trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from optuna_seqclf.errors import ConfigError
from optuna_seqclf.tracking import DEFAULT_MLFLOW_URI, NullTracker, Tracking, make_tracker
from optuna_seqclf.tracking.runs import Trackers


def test_tracking_of_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert Tracking.of(["aim"], Path("logs")) == Tracking(Path("logs"), None)
    assert Tracking.of(["mlflow"], Path("logs")) == Tracking(None, DEFAULT_MLFLOW_URI) == \
        Tracking(None, "sqlite:///mlflow.db")
    assert Tracking.of(["aim", "mlflow"], Path("a"), "http://h:5000") == Tracking(Path("a"), "http://h:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert Tracking.of(["mlflow"], Path("logs")).mlflow == "http://env:5000"
    assert Tracking.of(["mlflow"], Path("logs"), "http://flag:5000").mlflow == "http://flag:5000"  # the flag wins
    assert Tracking.of(["none"], Path("logs")) == Tracking(None, None)
    with pytest.raises(ConfigError, match="tracker wandb: unknown") as caught:
        Tracking.of(["wandb"], Path("logs"))
    assert caught.value.field == "tracker"
    assert isinstance(make_tracker(Tracking(None, None), "s"), NullTracker)
    assert isinstance(make_tracker(None, "s"), NullTracker)


class _Recorder:
    """A tracker that writes down what it is told."""

    def __init__(self, name: str, log: list[tuple[Any, ...]]) -> None:
        self.name, self.log = name, log

    def start(self, name: str, hparams: Any, tags: Any = None) -> _Recorder:
        self.log.append((self.name, "start", name, dict(tags or {})))
        return self

    def track(self, name: str, value: float, *, step: int, subset: str, epoch: float | None = None) -> None:
        self.log.append((self.name, "track", name, value, step, subset))

    def note(self, name: str, value: str) -> None:
        self.log.append((self.name, "note", name, value))

    def attach(self, path: Path, folder: str | None = None) -> None:
        self.log.append((self.name, "attach", path.name))

    def close(self, state: str = "COMPLETE") -> None:
        self.log.append((self.name, "close", state))

    def settle(self, finished: Any) -> None:
        self.log.append((self.name, "settle", dict(finished)))

    def finish(self, state: str) -> None:
        self.log.append((self.name, "finish", state))

    def study_run(self) -> dict[str, str] | None:
        return {"run_id": self.name} if self.name == "b" else None


def test_several_trackers_hear_everything_in_order() -> None:
    log: list[tuple[Any, ...]] = []
    both = Trackers([_Recorder("a", log), _Recorder("b", log)])  # type: ignore[list-item]
    run = both.start("s/trial-0", {"batch_size": 8}, {"key": "trial-0"})
    run.track("f1", 0.5, step=1, subset="eval")
    run.note("failed_run", "")
    run.attach(Path("x/all_results.json"))
    run.close("PRUNED")
    both.settle({"trial-1": "FAIL"})
    both.finish("COMPLETE")
    assert [entry[1:] for entry in log[::2]] == [entry[1:] for entry in log[1::2]]  # a then b, each call
    assert [e[1] for e in log[::2]] == ["start", "track", "note", "attach", "close", "settle", "finish"]
    assert log[8] == ("a", "close", "PRUNED")
    assert both.study_run() == {"run_id": "b"}  # the first tracker that has one
