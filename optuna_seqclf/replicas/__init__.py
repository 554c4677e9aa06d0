"""The final models: ``train_replicas`` trains one replica per seed with the study's best point (``train``),
``job`` makes each replica, ``results`` is what comes back and how it is written down."""

from optuna_seqclf.replicas.results import EnsembleResult, ReplicaResult, ReplicasResult
from optuna_seqclf.replicas.train import check_writable, train_replicas

__all__ = ["EnsembleResult", "ReplicaResult", "ReplicasResult", "check_writable",
           "train_replicas"]
