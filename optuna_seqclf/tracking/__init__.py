"""Experiment tracking: Aim (``aim_runs``) and MLflow (``mlflow_runs``) live in this package and nowhere else;
the rest of the package sees ``Tracking``, ``make_tracker`` and the run protocols of ``runs``."""

from optuna_seqclf.tracking.base import NoStudyRun
from optuna_seqclf.tracking.runs import (
    DEFAULT_MLFLOW_URI,
    DEFAULT_TRACKING,
    RUN_STATES,
    TRACKERS,
    NullTracker,
    TrackedRun,
    Tracker,
    Tracking,
    check_tracking,
    log_to,
    make_tracker,
    warning_line,
)

__all__ = ["DEFAULT_MLFLOW_URI", "DEFAULT_TRACKING", "RUN_STATES", "TRACKERS", "NoStudyRun", "NullTracker",
           "TrackedRun", "Tracker", "Tracking", "check_tracking", "log_to", "make_tracker", "warning_line"]
