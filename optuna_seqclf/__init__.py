"""optuna-seqclf: find the best batch size and learning rate for a sequence classifier, then train replicas.

The public API is small: build the frozen settings, then call ``tune`` and ``train_replicas``::

    from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, tune, train_replicas
"""

from .config import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, default_storage, default_study_name
from .errors import ConfigError, DataError, ModelLoadError, OutputError, SeqClfError, StudyError
from .replicas import ReplicaResult, ReplicasResult, train_replicas
from .report import best_trial
from .tuning import TuneResult, prepare, tune

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DataSpec",
    "HParams",
    "ModelLoadError",
    "OutputError",
    "ReplicaResult",
    "ReplicasResult",
    "SearchSpace",
    "SeqClfError",
    "StudyError",
    "StudySpec",
    "TrainSettings",
    "TuneResult",
    "__version__",
    "best_trial",
    "default_storage",
    "default_study_name",
    "prepare",
    "train_replicas",
    "tune",
]
