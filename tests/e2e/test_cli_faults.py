"""Workers under a cluster's faults on one PostgreSQL study: preempted (SIGTERM, then SIGKILL after a grace
time) and killed jobs, a restarted job that finishes their points: every point trained once, no hole."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from conftest import SCRIPTED_CLI
from faults import Cluster


@pytest.mark.slow
@pytest.mark.postgres
def test_preempted_and_killed_workers_leave_no_hole(workdir: Path, tiny_model: Path, postgres_url: str) -> None:
    # The protocol is the claim: the scripted trainer (each step 50 ms) keeps 8 processes on 2 cores honest
    # about time without training; bench/faults.py runs the same cluster with real training.
    cluster = Cluster(tiny_model, postgres_url, study="faults", heartbeat=3, command=tuple(SCRIPTED_CLI))
    # the preempted job has worker processes (SIGTERM reaches its process group); the others train in-process
    preempted, killed, survivor = cluster.start(2), cluster.start(1), cluster.start(1)
    cluster.wait_for_complete(4)  # every job is training by now
    cluster.preempt(preempted)  # SIGTERM, then SIGKILL 3 s later
    restarted = cluster.start(1)  # the scheduler starts the job again
    # Near the end, a kill mid-trial: the others run out of points before the dead ones go stale (9 s), and
    # must wait for them rather than end with holes.
    cluster.wait_for_complete(cluster.points() - 4)
    cluster.kill(killed)
    results = cluster.wait()
    for job in (survivor, restarted):
        code, out, err = results[job.pid]
        assert code == 0, err
        assert "Traceback" not in err and "Best Configuration is" in out
        assert "Not complete" not in err, err  # no job ended with points held by dead workers
    completes = cluster.completes()
    assert len(completes) == cluster.points() and set(completes.values()) == {1}, completes
    assert not [t.number for t in cluster.trials() if t.state == TrialState.RUNNING]
