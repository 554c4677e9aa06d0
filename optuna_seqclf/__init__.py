"""optuna-seqclf: find the best batch size and learning rate for a sequence classifier, then train replicas.

The public API is small: build the frozen settings, then call ``tune`` and ``train_replicas`` (or ``run``
for both)::

    from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, tune, train_replicas

A library call leaves the calling process as it was (threads, allocator, log levels, CUDA device);
``configure_process()`` gives a Python process the command line's speed settings.
"""

from optuna_seqclf.errors import (
    ConfigError,
    DashboardError,
    DataError,
    ModelLoadError,
    OutputError,
    SeqClfError,
    StudyError,
    TrackingError,
)
from optuna_seqclf.pipeline import RunResult, run
from optuna_seqclf.predict.predictor import Evaluation, Prediction, Predictor
from optuna_seqclf.replicas import EnsembleResult, ReplicaResult, ReplicasResult, train_replicas
from optuna_seqclf.runtime import configure_process
from optuna_seqclf.settings import (
    DataSpec,
    HParams,
    MachineSettings,
    SearchSpace,
    StudySpec,
    TrainSettings,
    default_storage,
    default_study_name,
)
from optuna_seqclf.study.queue import PointStatus, TrialResult
from optuna_seqclf.study.selection import ConfirmedPoint, Selection
from optuna_seqclf.summary import MetricSummary, Summary
from optuna_seqclf.tracking import Tracking
from optuna_seqclf.training.prepared import Prepared, prepare
from optuna_seqclf.tuning.tune import TuneResult, study_result, tune

__version__ = "0.4.0"

__all__ = [
    "ConfigError",
    "ConfirmedPoint",
    "DashboardError",
    "DataError",
    "DataSpec",
    "EnsembleResult",
    "Evaluation",
    "HParams",
    "MachineSettings",
    "MetricSummary",
    "ModelLoadError",
    "OutputError",
    "PointStatus",
    "Prediction",
    "Predictor",
    "Prepared",
    "ReplicaResult",
    "ReplicasResult",
    "RunResult",
    "SearchSpace",
    "Selection",
    "SeqClfError",
    "StudyError",
    "StudySpec",
    "Summary",
    "Tracking",
    "TrackingError",
    "TrainSettings",
    "TrialResult",
    "TuneResult",
    "__version__",
    "configure_process",
    "default_storage",
    "default_study_name",
    "prepare",
    "run",
    "study_result",
    "train_replicas",
    "tune",
]
