"""A small cluster on one machine, for the fault tests and bench/faults.py: `tune` commands (each with its
worker processes, in its own process group as a scheduler's job step is) on one study, and the faults a
cluster has: SIGTERM then SIGKILL after a grace time (preemption), plain SIGKILL, a database restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA, REFERENCE_JOB


@dataclass
class Cluster:
    model: Path
    storage: str
    study: str = "faults"
    grid: tuple[str, ...] = ("--batch-sizes", "8,16,32", "--learning-rates", "1e-3,3e-4,1e-4,3e-5,1e-5,3e-6,1e-6,5e-4")
    epochs: int = 2
    heartbeat: int = 2  # seconds; grace = 3 x heartbeat (unless given): a killed worker's point comes back soon
    grace: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = (sys.executable, "-m", "optuna_seqclf")  # the tests give the scripted trainer's
    # The reference's exhaustive job: the claims count each grid point COMPLETE exactly once (pruning and the
    # confirmation stage with several machines: tests/e2e/test_cli_confirm.py)
    job: tuple[str, ...] = REFERENCE_JOB
    jobs: list[subprocess.Popen[str]] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    _db: optuna.storages.RDBStorage | None = None

    def start(self, workers: int, *extra: str) -> subprocess.Popen[str]:
        """One `tune` command with ``workers`` worker processes, as one node of a job would run it."""
        cmd = [*self.command, "tune", str(EXAMPLE_DATA), "--model", str(self.model),
               "--study-name", self.study, "--storage", self.storage, "--epochs", str(self.epochs),
               "--workers", str(workers), "--threads", "1", "--no-track", *self.grid, *self.job, *extra]
        env = {**os.environ, "SEQCLF_HEARTBEAT_INTERVAL": str(self.heartbeat),
               "SEQCLF_GRACE_PERIOD": str(self.grace or 3 * self.heartbeat), **self.env}
        job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
        self.jobs.append(job)
        return job

    def preempt(self, job: subprocess.Popen[str], grace_s: float = 3.0) -> None:
        """What a scheduler does: SIGTERM to the job's processes, SIGKILL to whatever is left after the grace."""
        self.killed.add(job.pid)
        os.killpg(job.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.1)
        _killpg(job.pid)

    def kill(self, job: subprocess.Popen[str]) -> None:
        self.killed.add(job.pid)
        _killpg(job.pid)

    def wait(self, timeout: float = 900) -> dict[int, tuple[int, str, str]]:
        """Every job's (return code, stdout, stderr), by pid."""
        out = {}
        for job in self.jobs:
            stdout, stderr = job.communicate(timeout=timeout)
            out[job.pid] = (job.returncode, stdout, stderr)
        return out

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        if self._db is None:  # one engine for every look (each new one would keep connections open)
            self._db = optuna.storages.RDBStorage(self.storage, engine_kwargs={"pool_pre_ping": True})
        try:
            return optuna.load_study(study_name=self.study, storage=self._db).get_trials()
        except KeyError:  # not created yet
            return []

    def completes(self) -> Counter[tuple[int, float]]:
        return Counter((t.params["batch_size"], t.params["learning_rate"]) for t in self.trials()
                       if t.state == TrialState.COMPLETE)

    def points(self) -> int:
        sizes, rates = self.grid[1].split(","), self.grid[3].split(",")
        return len(sizes) * len(rates)

    def wait_for_complete(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.completes().values()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} complete trials after {timeout} s")
            time.sleep(0.5)


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pid, signal.SIGKILL)
