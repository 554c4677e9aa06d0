"""Default names: a study's and its task's, from the options given and the data folder."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

from optuna_seqclf.errors import SeqClfError
from optuna_seqclf.settings import default_storage, default_study_name
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.storage import open_storage, sqlite_path

REFERENCE_TASK_NAME = "sentiment"  # the reference's --task-name default, and ours before 0.6


def default_study(study_name: str | None, storage: str | None, config_name: str, model: str, task_name: str | None,
                  data_dir: Path) -> tuple[str, str, str, str | None]:
    """(study name, task name, storage URL, a note or None) for the options given; the task name defaults to
    the data folder's name. A study made under the old default task name (``sentiment``) for the same data
    folder is still found and resumed when no study has the new name (the note says so)."""
    task = task_name or task_name_of(data_dir)
    name = study_name or default_study_name(config_name, model, task)
    url = storage or default_storage(name)
    if study_name or task_name or task == REFERENCE_TASK_NAME or _has_study(url, name):
        return name, task, url, None
    old = default_study_name(config_name, model, REFERENCE_TASK_NAME)
    old_url = storage or default_storage(old)
    if not _has_study(old_url, old, data_dir):
        return name, task, url, None
    return old, REFERENCE_TASK_NAME, old_url, (
        f"Resuming study {old!r}, made for this data under the old default task name {REFERENCE_TASK_NAME!r} "
        f"(new studies are named after the data folder: {name!r})")


def task_name_of(data_dir: Path) -> str:
    """The data folder's name as a task name (letters, digits, '.', '_', '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data_dir).resolve().name).strip("-.") or "data"
    return name if name[0].isalnum() else f"data{name}"


def _has_study(url: str, name: str, data_dir: Path | None = None) -> bool:
    """Whether ``url`` holds study ``name`` (made from ``data_dir``, when given); never creates a file."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return False
    try:
        storage = open_storage(url, must_exist=True)
        study = optuna.load_study(study_name=name, storage=storage)
        return data_dir is None or StudyRecord.from_study(study).data.data_dir == Path(data_dir).resolve()
    except (KeyError, SeqClfError):
        return False
