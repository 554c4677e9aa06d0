"""What train_replicas reports: the line that says where each replica came from, and replicas_summary.json's
scores (failed runs marked and left out of the top-level mean, every seed's mean beside it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_seqclf.replicas.results import EnsembleResult, ReplicaResult, ReplicasResult, origin_line, summary_json
from optuna_seqclf.settings import HParams
from optuna_seqclf.summary import Summary


def _replica(seed: int, dev: float, *, reused: bool = False, failed: str | None = None,
             from_trial: int | None = None) -> ReplicaResult:
    scores = {"dev_f1": dev, "dev_accuracy": dev, "test_f1": dev - 0.1, "test_accuracy": dev - 0.1}
    return ReplicaResult(seed, f"out/seed{seed}", scores, reused=reused, failed_run=failed, from_trial=from_trial)


def test_the_origin_line_names_the_study_s_trials_the_trained_seeds_and_those_in_place() -> None:
    rows = [_replica(1, 0.8, from_trial=7), _replica(2, 0.8, from_trial=12), _replica(3, 0.8),
            _replica(4, 0.8, reused=True, from_trial=3), _replica(5, 0.8, reused=True)]
    assert origin_line(rows) == ("Replicas: seed(s) 1,2 from the study's trial(s) 7,12; seed(s) 3 trained; "
                                 "seed(s) 4,5 already in place")
    assert origin_line([_replica(1, 0.8)]) == "Replicas: seed(s) 1 trained"


def test_the_summary_leaves_failed_runs_out_of_the_mean_and_keeps_every_seed_beside_it() -> None:
    rows = [_replica(1, 0.5, failed="predicts one class"), _replica(2, 0.8), _replica(3, 0.9)]
    kept = rows[1:]
    ensemble = EnsembleResult((2, 3), {"dev_f1": 0.85, "test_f1": 0.75, "test_accuracy": 0.77})
    out = ReplicasResult("s", HParams(16, 2e-5), 0.91, Path("out"), rows, Summary.of([r.to_json() for r in kept]),
                         ensemble, Summary.of([r.to_json() for r in rows]))
    payload = summary_json(out)
    assert payload["best_dev_f1"] == 0.91 and payload["params"] == {"batch_size": 16, "learning_rate": 2e-5}
    assert payload["seeds"] == [1, 2, 3] and payload["failed_runs"] == [1]
    assert payload["mean"]["dev_f1"] == pytest.approx(0.85)  # seeds 2 and 3 only
    assert payload["all_seeds"]["mean"]["dev_f1"] == pytest.approx(2.2 / 3)
    assert payload["ensemble"]["seeds"] == [2, 3] and payload["replicas"][0]["failed_run"] == "predicts one class"
    # the layout before tasks: every replica's scores at the top level of its row, the ensemble's too
    assert payload["replicas"][1]["dev_f1"] == 0.8 and payload["ensemble"]["test_f1"] == 0.75
    assert payload["task"] == "single-label" and payload["columns"] == ["dev_f1", "test_f1", "test_accuracy"]
    alone = ReplicasResult("s", HParams(16, 2e-5), 0.91, Path("out"), kept, Summary.of([r.to_json() for r in kept]),
                           ensemble)
    assert summary_json(alone)["all_seeds"] is None and summary_json(alone)["failed_runs"] == []


def test_a_replica_s_scores_come_back_from_its_results_file() -> None:
    results = {"eval_pearson": 0.8, "eval_samples": 40, "test_pearson": 0.7, "test_mse": 0.3, "epoch": 2.0,
               "eval_f1_per_class": {}, "failed_run": None, "from_trial": 3, "test_samples": 50}
    replica = ReplicaResult.of_results(4, "out/seed4", results, reused=True)
    assert replica.scores == {"dev_pearson": 0.8, "test_pearson": 0.7, "test_mse": 0.3}
