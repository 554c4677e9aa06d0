"""Issue 18: 16 workers on one PostgreSQL study through a cluster's faults.

4 `tune` commands x `--workers 4` (each in its own process group, as a scheduler's job), the tiny random BERT
of the tests, the 36-point default grid, 2 epochs, a throwaway PostgreSQL started here, heartbeats at their
defaults (30 s, grace 120 s). Faults, in order:

1. the database stops for 30 s (``pg_ctl stop``, then ``start``) while trials train;
2. one command is preempted: SIGTERM, SIGKILL 10 s later; a new command (4 workers) replaces it;
3. another command is SIGKILLed mid-trial; a new command replaces it.

Recorded: points complete, duplicates, trials left RUNNING, exit codes, time to the first trial recorded
after the database came back, time from each kill to the retry of the points it interrupted, connections
at peak (``pg_stat_activity``), and whether every dev F1 equals a single-process run's (same grid, SQLite).

    python bench/faults.py
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common

sys.path.insert(0, str(_common.ROOT / "tests"))
GRID = ("--batch-sizes", "8,16,32", "--learning-rates", "1e-3,1e-4,1e-5,1e-6,3e-3,3e-4,3e-5,3e-6,5e-3,5e-4,5e-5,5e-6")


class PeakConnections(threading.Thread):
    """Counts the study database's connections every 0.5 s (nothing while the server is down)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.peak, self.stop = url.replace("postgresql+psycopg", "postgresql"), 0, threading.Event()

    def run(self) -> None:
        import psycopg

        while not self.stop.wait(0.5):
            try:
                with psycopg.connect(self.url, connect_timeout=2) as con:
                    n = con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'seqclf'").fetchone()[0]
                self.peak = max(self.peak, int(n) - 1)  # not this connection
            except psycopg.OperationalError:
                pass


def _running(cluster) -> dict[int, tuple[int, float]]:  # type: ignore[no-untyped-def]
    from optuna.trial import TrialState

    return {t.number: (t.params.get("batch_size"), t.params.get("learning_rate")) for t in cluster.trials()
            if t.state == TrialState.RUNNING}


def _retry_delays(cluster, held: dict[int, tuple[int, float]], at: float) -> list[float]:  # type: ignore[no-untyped-def]
    """For each trial RUNNING at a kill that ended failed: seconds from the kill to the next trial of its point."""
    from optuna.trial import TrialState

    trials = {t.number: t for t in cluster.trials()}
    delays = []
    for number, point in held.items():
        if trials[number].state != TrialState.FAIL:
            continue  # it finished before the signal landed (or was a duplicate claim, pruned)
        later = [t.datetime_start.timestamp() for t in trials.values() if t.number > number and t.datetime_start
                 and (t.params.get("batch_size"), t.params.get("learning_rate")) == point]
        delays.append(min(later) - at if later else float("nan"))
    return delays


def main() -> None:
    from conftest import EXAMPLE_DATA, ThrowawayPostgres, _texts
    from faults import Cluster
    from tiny_model import build_tiny_bert

    tmp = Path(tempfile.mkdtemp(prefix="seqclf-faults-"))
    model = build_tiny_bert(tmp / "tiny", _texts(EXAMPLE_DATA / "train.txt"), vocab_size=400)
    server = ThrowawayPostgres(max_connections=100)
    monitor = PeakConnections(server.url)
    monitor.start()
    cluster = Cluster(model, server.url, study="bench", grid=GRID, heartbeat=30, grace=120)
    try:
        started = time.time()
        jobs = [cluster.start(4, "--quiet") for _ in range(4)]
        cluster.wait_for_complete(6)
        server.stop()
        stopped = time.time()
        time.sleep(30)
        server.start()
        restarted = time.time()
        cluster.wait_for_complete(14)
        held_a, at_a = _running(cluster), time.time()
        cluster.preempt(jobs[0], grace_s=10)
        cluster.start(4, "--quiet")
        cluster.wait_for_complete(22)
        held_b, at_b = _running(cluster), time.time()
        cluster.kill(jobs[1])
        cluster.start(4, "--quiet")
        results = cluster.wait(timeout=1800)
        finished = time.time()
        monitor.stop.set()
        _report(cluster, results, started, stopped, restarted, finished, monitor.peak,
                _retry_delays(cluster, held_a, at_a), _retry_delays(cluster, held_b, at_b), model, tmp)
    finally:
        for job in cluster.jobs:
            if job.poll() is None:
                cluster.kill(job)
        server.close()


def _single_process(model: Path, tmp: Path) -> dict[tuple[int, float], float]:
    import optuna
    from optuna.trial import TrialState

    from conftest import EXAMPLE_DATA

    storage = f"sqlite:///{tmp / 'alone.db'}"
    subprocess.run([sys.executable, "-m", "optuna_seqclf", "tune", str(EXAMPLE_DATA), "--model", str(model),
                    "--study-name", "alone", "--storage", storage, "--epochs", "2", "--threads", "1", "--no-track",
                    "--quiet", *GRID], check=True, capture_output=True, timeout=1800)
    return {(t.params["batch_size"], t.params["learning_rate"]): t.value
            for t in optuna.load_study(study_name="alone", storage=storage).get_trials(states=(TrialState.COMPLETE,))}


def _report(cluster, results, started, stopped, restarted, finished, peak, delays_a, delays_b, model,  # type: ignore[no-untyped-def]
            tmp) -> None:
    from optuna.trial import TrialState

    trials = cluster.trials()
    completes = cluster.completes()
    after = [t.datetime_complete.timestamp() for t in trials if t.datetime_complete
             and t.datetime_complete.timestamp() >= restarted and t.state == TrialState.COMPLETE]
    during = [t for t in trials if t.state == TrialState.COMPLETE and t.datetime_start.timestamp() < stopped
              and t.datetime_complete.timestamp() >= restarted]
    survivors = [job for job in cluster.jobs if job.pid not in cluster.killed]
    codes = [results[job.pid][0] for job in survivors]
    logs = "".join(results[job.pid][2] for job in cluster.jobs)
    values = {(t.params["batch_size"], t.params["learning_rate"]): t.value for t in trials
              if t.state == TrialState.COMPLETE}
    alone = _single_process(model, tmp)
    same = sum(1 for point, value in alone.items() if values.get(point) == value)
    fmt = lambda ds: ", ".join(f"{d:.0f} s" for d in ds) or "none interrupted"  # noqa: E731
    _common.record("Issue 18: 16 workers on PostgreSQL through a database stop, a preemption and a kill", [
        f"4 tune commands x 4 workers (16), then 2 more commands x 4 replacing the preempted and the killed one; "
        f"tiny BERT, 36-point grid, 2 epochs; heartbeat 30 s, grace 120 s; "
        f"{dt.timedelta(seconds=round(finished - started))} in all",
        "",
        f"- points with a COMPLETE trial: **{len(completes)}/36**; points trained twice: "
        f"**{sum(c - 1 for c in completes.values())}**; trials left RUNNING: "
        f"**{sum(t.state == TrialState.RUNNING for t in trials)}**; FAIL (interrupted by the faults, then "
        f"retried): {sum(t.state == TrialState.FAIL for t in trials)}",
        f"- surviving commands' exit codes: {codes}; 'too many connections' in the logs: "
        f"{'yes' if 'too many' in logs.lower() else 'no'}; tracebacks: {logs.count('Traceback')}",
        f"- database stopped 30 s: {len(during)} trial(s) started before the stop were recorded after the restart "
        f"(finished while it was down, or running through it); first trial recorded "
        f"{(min(after) - restarted) if after else float('nan'):.1f} s after the restart",
        f"- preemption (SIGTERM, SIGKILL 10 s later): kill to retry of its interrupted points: {fmt(delays_a)}",
        f"- SIGKILL mid-trial: kill to retry: {fmt(delays_b)} (a killed worker's point waits for its heartbeat "
        "to go stale: grace 120 s)",
        f"- connections at peak: **{peak}** (PostgreSQL max_connections 100)",
        f"- dev F1 equal to a single-process run's (same grid, `--threads 1`): **{same}/{len(alone)}** points",
        *([f"- first traceback's last line: `{_last_line(logs)}`"] if "Traceback" in logs else []),
    ])


def _last_line(logs: str) -> str:
    tail = logs[logs.index("Traceback"):].splitlines()
    return next((line for line in tail[1:] if line and not line.startswith(" ")), tail[-1])


if __name__ == "__main__":
    main()
