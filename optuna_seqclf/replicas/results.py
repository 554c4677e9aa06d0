"""What ``train_replicas`` returns, and how it is written down: each replica's scores, their summary, the seed
ensemble; replicas_summary.json's layout and the line that says where each replica came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optuna_seqclf.settings import HParams
from optuna_seqclf.summary import Summary, by_name


class ScoresByName:
    """``.test_f1``, ``.dev_accuracy`` (``.test_pearson``, ...): a score of ``scores`` by name, as before tasks."""

    scores: dict[str, float]

    def __getattr__(self, name: str) -> float:
        if name == "scores":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return by_name(self.scores, name, "score")


@dataclass(frozen=True)
class ReplicaResult(ScoresByName):
    seed: int
    path: str
    scores: dict[str, float]  # every metric of the task on dev and test: ``dev_f1``, ``test_pearson``, ...
    reused: bool = False  # its folder was complete already: read, not written
    failed_run: str | None = None  # why it is no better than a trivial predictor on dev (the task's rule)
    from_trial: int | None = None  # the study's trial whose kept weights it is (None: trained by `train`)

    def to_json(self) -> dict[str, Any]:
        """Its row of replicas_summary.json: the scores at the top level, as before tasks (``dev_f1``, ...)."""
        return {"seed": self.seed, "path": self.path, **self.scores, "reused": self.reused,
                "failed_run": self.failed_run, "from_trial": self.from_trial}

    @classmethod
    def of_results(cls, seed: int, path: str, results: dict[str, Any], **extra: Any) -> ReplicaResult:
        """From a replica's ``all_results.json`` (``eval_<metric>`` and ``test_<metric>``)."""
        return cls(seed, path, split_scores(results), **extra)


@dataclass(frozen=True)
class ReplicasResult:
    study_name: str
    params: HParams
    best_dev_value: float  # the chosen point's dev score in the study's metric (its objective)
    output_dir: Path
    replicas: list[ReplicaResult]
    summary: Summary  # of the replicas that are not failed runs (of all, when every one failed)
    ensemble: EnsembleResult  # of the same replicas
    summary_all: Summary | None = None  # of every replica, failed runs included, when some failed

    @property
    def best_dev_f1(self) -> float:
        """The same as ``best_dev_value``: the name before ``--metric`` (kept for callers of 0.4)."""
        return self.best_dev_value

    @property
    def failed(self) -> list[ReplicaResult]:
        return [r for r in self.replicas if r.failed_run is not None]


@dataclass(frozen=True)
class EnsembleResult(ScoresByName):
    """The replicas' seed ensemble on dev and test, as ``predict`` runs it: their probabilities averaged (their
    scores, for regression), scored with the task's metrics (``dev_f1``, ``test_micro_f1``, ...)."""

    seeds: tuple[int, ...]
    scores: dict[str, float]
    thresholds: list[float] | None = None  # multi-label, --thresholds tuned: per label, on the ensemble's dev

    def to_json(self) -> dict[str, Any]:
        """ensemble_results.json: the seeds and the scores at the top level, as before tasks; the thresholds
        ``predict`` decides the ensemble's labels at (none: 0.5)."""
        return {"seeds": list(self.seeds), **self.scores, "thresholds": self.thresholds}


def split_scores(results: dict[str, Any]) -> dict[str, float]:
    """``dev_<metric>`` / ``test_<metric>`` from a results dict's numbers named ``eval_<metric>`` / ``test_<metric>``
    (not the sample counts)."""
    out = {}
    for key, value in results.items():
        split, _, metric = key.partition("_")
        if split in ("eval", "test") and metric != "samples" and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            out[f"{'dev' if split == 'eval' else 'test'}_{metric}"] = float(value)
    return out


def origin_line(results: list[ReplicaResult]) -> str:
    """Which replicas came from the study's trials, which were trained, which were there already."""
    def seeds(rows: list[ReplicaResult]) -> str:
        return ",".join(str(r.seed) for r in rows)

    study = [r for r in results if r.from_trial is not None and not r.reused]
    trained = [r for r in results if r.from_trial is None and not r.reused]
    parts = [f"seed(s) {seeds(study)} from the study's trial(s) {','.join(str(r.from_trial) for r in study)}"
             if study else "", f"seed(s) {seeds(trained)} trained" if trained else "",
             f"seed(s) {seeds([r for r in results if r.reused])} already in place" if any(r.reused for r in results)
             else ""]
    return "Replicas: " + "; ".join(p for p in parts if p)


def summary_json(out: ReplicasResult) -> dict[str, Any]:
    """replicas_summary.json's scores: every replica (failed runs marked), the mean of those not failed (at
    the top level, as before failed runs were marked), of all seeds, and of their ensemble."""
    # best_dev_f1: the file's key since 0.1, whatever the study's metric
    return {"best_dev_f1": out.best_dev_value, "params": asdict(out.params), "seeds": [r.seed for r in out.replicas],
            "task": out.summary.task, "columns": list(out.summary.columns),
            "replicas": [r.to_json() for r in out.replicas], "failed_runs": [r.seed for r in out.failed],
            **out.summary.to_json(), "all_seeds": None if out.summary_all is None else out.summary_all.to_json(),
            "ensemble": out.ensemble.to_json()}
