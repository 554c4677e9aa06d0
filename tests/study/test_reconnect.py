"""Riding through database outages: retried with back-off, a finished trial recorded once the database is
back, a one-line error past the deadline; and a real PostgreSQL restart (and a long stop) under 2 workers."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA, REFERENCE_JOB, SCRIPTED_CLI, ThrowawayPostgres
from optuna_seqclf.errors import StudyError
from optuna_seqclf.study.storage import open_storage


def _lost() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


def _storage(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_storage(f"sqlite:///{tmp_path / 's.db'}")


def test_lost_connection_is_retried_until_it_works(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    calls = []

    def flaky() -> int:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise optuna.exceptions.StorageInternalError("commit failed") from _lost()
        return 42

    assert storage._retrying(flaky) == 42
    assert len(calls) == 3 and calls[2] - calls[1] > calls[1] - calls[0]  # back-off


def test_a_repeated_state_change_that_had_committed_is_success(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    attempts = []

    def commit_then_lose() -> bool:
        attempts.append(1)
        if len(attempts) == 1:
            raise _lost()  # the commit reached the server; the answer did not
        raise optuna.exceptions.UpdateFinishedTrialError("Trial#0 has already finished")

    assert storage._retrying(commit_then_lose) is True
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # without a lost connection: a real error
        storage._retrying(lambda: (_ for _ in ()).throw(
            optuna.exceptions.UpdateFinishedTrialError("finished")))


def test_gives_up_after_the_deadline_with_one_line_then_fails_fast(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQCLF_DB_RETRY_S", "1")
    storage = _storage(tmp_path)

    def down() -> None:
        raise _lost()

    with pytest.raises(StudyError) as info:
        storage._retrying(down)
    message = str(info.value)
    assert "has been unreachable for 1 s" in message and "run `tune` again" in message and "\n" not in message
    started = time.monotonic()
    with pytest.raises(StudyError):
        storage._retrying(lambda: 1)  # the worker is stopping: no second wait
    assert time.monotonic() - started < 0.5



def test_other_errors_are_raised_at_once(tmp_path: Path) -> None:
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("bad value")

    with pytest.raises(ValueError):
        _storage(tmp_path)._retrying(bad)
    assert calls == [1]


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restart_and_a_long_stop_under_two_workers(workdir: Path, tiny_model: Path) -> None:
    """The scripted trainer (the protocol is the claim): a restart, then a stop longer than the back-off's
    first four waits (0.5 + 1 + 2 + 4 s), while trials finish."""
    server = ThrowawayPostgres()
    try:
        cmd = [*SCRIPTED_CLI, "tune", str(EXAMPLE_DATA), "--model", str(tiny_model),
               "--study-name", "pg", "--storage", server.url, "--epochs", "3", "--workers", "2", "--no-track",
               "--batch-sizes", "8,16", "--learning-rates", "1e-3,3e-4,1e-4,3e-5,1e-5,3e-6", *REFERENCE_JOB]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_complete(server.url, 1, proc)  # start-up and the first trial
        server.stop()
        server.start()  # a restart
        time.sleep(3)
        server.stop()
        time.sleep(12)  # a long stop: trials finish while the database is down
        server.start()
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "Best Configuration is" in out
        trials = optuna.load_study(study_name="pg", storage=server.url).get_trials()
        complete = Counter((t.params["batch_size"], t.params["learning_rate"])
                           for t in trials if t.state == TrialState.COMPLETE)
        assert len(complete) == 12 and set(complete.values()) == {1}, complete
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_past_the_deadline_a_worker_stops_with_one_line_and_the_study_resumes(workdir: Path,
                                                                               tiny_model: Path) -> None:
    server = ThrowawayPostgres()
    try:
        cmd = [*SCRIPTED_CLI, "tune", str(EXAMPLE_DATA), "--model", str(tiny_model),
               "--study-name", "pg", "--storage", server.url, "--epochs", "3", "--no-track",
               "--batch-sizes", "8,16", "--learning-rates", "1e-3,3e-4,1e-4,3e-5,1e-5,3e-6", *REFERENCE_JOB]
        env = {**os.environ, "SEQCLF_DB_RETRY_S": "5", "SEQCLF_HEARTBEAT_INTERVAL": "2", "SEQCLF_GRACE_PERIOD": "6"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _wait_complete(server.url, 2, proc)
        server.stop()
        _, err = proc.communicate(timeout=300)
        server.start()
        assert proc.returncode == 1, err
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "has been unreachable for 5 s" in errors[0], err
        assert "Traceback" not in err
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert again.returncode == 0, again.stderr
        trials = optuna.load_study(study_name="pg", storage=server.url).get_trials()
        complete = Counter((t.params["batch_size"], t.params["learning_rate"])
                           for t in trials if t.state == TrialState.COMPLETE)
        assert len(complete) == 12 and set(complete.values()) == {1}, (  # what to look at when it is not
            complete, [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials], again.stderr[-3000:])
        assert not [t for t in trials if t.state == TrialState.RUNNING]
    finally:
        server.close()


def _wait_complete(url: str, n: int, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while _complete(url) < n and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)


def _complete(url: str) -> int:
    try:
        return len(optuna.load_study(study_name="pg", storage=url).get_trials(states=(TrialState.COMPLETE,)))
    except KeyError:
        return 0


def test_a_failed_rollback_after_a_lost_connection_is_a_lost_connection(tmp_path: Path) -> None:
    """What Optuna raises when the server shuts a connection down mid-transaction: StorageInternalError from
    PendingRollbackError, raised while handling the OperationalError."""
    storage = _storage(tmp_path)
    calls = []

    def shut_down() -> int:
        calls.append(1)
        if len(calls) == 1:
            try:
                raise _lost()
            except sqlalchemy.exc.OperationalError:
                try:
                    raise sqlalchemy.exc.PendingRollbackError("Can't reconnect until the transaction is rolled back")
                except sqlalchemy.exc.PendingRollbackError as pending:
                    raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") \
                        from pending
        return 7

    assert storage._retrying(shut_down) == 7 and len(calls) == 2
