"""Default names: the task is named after the data folder; a study made under the old default task name
(``sentiment``) for the same data is still found and resumed."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, tune
from optuna_seqclf.tuning.names import default_study, task_name_of
from scripted import ScriptedTrainer


def test_the_task_is_named_after_the_data_folder(workdir: Path) -> None:
    assert task_name_of(workdir / "banking77") == "banking77"
    assert task_name_of(workdir / "my corpus (v2)") == "my-corpus-v2"
    assert task_name_of(workdir / "_x") == "data_x"  # a name starts with a letter or digit
    name, task, url, note = default_study(None, None, "bert-custom", "some/model", None, workdir / "banking77")
    assert (name, task, url, note) == ("bert-custom-model_banking77", "banking77",
                                       "sqlite:///studies/bert-custom-model_banking77.db", None)
    given = default_study(None, None, "bert-custom", "m", "sentiment", workdir / "banking77")
    assert given[:3] == ("bert-custom-m_sentiment", "sentiment", "sqlite:///studies/bert-custom-m_sentiment.db")


def test_a_study_made_under_the_old_default_name_is_still_resumed(workdir: Path, tiny_model: Path) -> None:
    data = workdir / "banking77"
    shutil.copytree(EXAMPLE_DATA, data)
    old = StudySpec(study_name="bert-custom-m_sentiment", storage="sqlite:///studies/bert-custom-m_sentiment.db")
    tune(old, DataSpec(data), TrainSettings(model=str(tiny_model), epochs=1), SearchSpace((8,), (1e-3,)),
         tracking=None, trainer=ScriptedTrainer())
    name, task, url, note = default_study(None, None, "bert-custom", "m", None, data)
    assert (name, task, url) == (old.study_name, "sentiment", old.storage)
    assert note is not None and "old default task name 'sentiment'" in note and "bert-custom-m_banking77" in note
    # another data folder has its own study, under its own name
    other = workdir / "other"
    shutil.copytree(EXAMPLE_DATA, other)
    assert default_study(None, None, "bert-custom", "m", None, other)[:2] == ("bert-custom-m_other", "other")
    assert not Path("studies/bert-custom-m_other.db").exists()  # looking never creates a study file
