"""storage: SQLite claims of queued trials are exactly-once across processes."""

from __future__ import annotations

import logging
import multiprocessing as mp
from pathlib import Path

import optuna
from optuna.trial import TrialState

from optuna_seqclf.study.storage import SQLiteStorage, open_storage


def _claim_all(url: str, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(logging.ERROR)
    study = optuna.load_study(study_name="q", storage=open_storage(url))
    claimed: list[int] = []
    try:
        while True:
            trial = study.ask()
            if "point" not in trial.user_attrs:  # the queue ran dry: Optuna made a new trial
                study.tell(trial, state=TrialState.FAIL)
                break
            claimed.append(trial.number)
            study.tell(trial, 0.0)  # raises when another process completed the trial it also claimed
    finally:
        out.put(claimed)


def test_four_processes_claim_each_queued_trial_once(tmp_path: Path) -> None:
    # Without SQLiteStorage's lock, this claimed 224-227 trials for 200 (Optuna 5.1, 2 cores).
    url = f"sqlite:///{tmp_path / 'q.db'}"
    storage = open_storage(url)
    assert isinstance(storage, SQLiteStorage)
    study = optuna.create_study(study_name="q", storage=storage)
    for point in range(200):
        study.enqueue_trial({}, user_attrs={"point": point})
    out: mp.Queue = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(target=_claim_all, args=(url, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    claimed = [number for _ in procs for number in out.get(timeout=300)]
    for proc in procs:
        proc.join(timeout=60)
    assert sorted(claimed) == list(range(200))

