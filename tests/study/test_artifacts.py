"""Trial weights kept as Optuna artifacts: only trials that could be chosen upload, those that drop out are
deleted, a checksum guards the reuse, a kill during an upload leaves nothing usable, a bad store is refused
before anything trains. The scripted trainer returns the (untrained) tiny BERT, so uploads are real files."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest

from conftest import EXAMPLE_DATA
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, tune
from optuna_seqclf.errors import ConfigError
from optuna_seqclf.study.artifacts import (
    KeptWeights,
    WeightsUnavailable,
    fetch_weights,
    kept_by_seed,
    open_artifact_store,
    reading_store,
)
from optuna_seqclf.study.schema import KEPT_WEIGHTS_ATTR
from optuna_seqclf.study.storage import load_study, open_storage
from scripted import ScriptedTrainer

SPACE = SearchSpace((8, 16), (1e-3, 1e-4))  # scripted scores: (8, 1e-3) best, then (16, 1e-3), (8, 1e-4), ...


def _tune(model: Path, name: str, top: int = 0, trainer: ScriptedTrainer | None = None, **spec: object) -> optuna.Study:
    study_spec = StudySpec(study_name=name, storage=f"sqlite:///studies/{name}.db", confirm_top=top, **spec)  # type: ignore[arg-type]
    tune(study_spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(model), epochs=1), SPACE, tracking=None,
         trainer=trainer or ScriptedTrainer(with_model=True))
    url = study_spec.storage
    return load_study(name, open_storage(url), url)


def _stored(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def test_only_the_chosen_trial_keeps_its_weights_without_confirmation(workdir: Path, tiny_model: Path) -> None:
    study = _tune(tiny_model, "k1")
    kept = {t.number: KeptWeights.of(t) for t in study.trials if KEPT_WEIGHTS_ATTR in t.user_attrs}
    best = study.best_trial
    # promising-first trains (16, 1e-4) first: it uploads (the best so far), then drops out and is deleted
    assert best.number in kept and len(kept) >= 2
    files = _stored(workdir / "studies" / "k1.artifacts")
    assert [f.name for f in files] == [kept[best.number].artifact_id]  # type: ignore[union-attr]
    weights = kept[best.number]
    assert weights is not None and weights.seed == 1 and weights.settings["epochs"] == 1.0
    assert weights.trained_on["device"] == "cpu" and weights.trained_on["threads"] >= 1
    assert set(kept_by_seed(study, HParams(8, 1e-3))) == {1}


def test_the_confirmed_point_keeps_every_seed_and_the_others_are_deleted(workdir: Path, tiny_model: Path) -> None:
    study = _tune(tiny_model, "k2", top=2, confirm_seeds=2)
    chosen = kept_by_seed(study, HParams(8, 1e-3))
    assert sorted(chosen) == [1, 2, 3]  # the grid's seed and both confirmation seeds
    ids = sorted(KeptWeights.of(t).artifact_id for t in chosen.values())  # type: ignore[union-attr]
    assert [f.name for f in _stored(workdir / "studies" / "k2.artifacts")] == ids
    # the runner-up's confirmation runs uploaded too, and were deleted once the stage had chosen
    assert set(kept_by_seed(study, HParams(16, 1e-3))) == {1, 2, 3}


def test_failed_runs_keep_the_best_ones_weights_alone(workdir: Path, tiny_model: Path) -> None:
    """The stage never confirms a failed run: with --confirm-top 3 and every run failed, only the chosen (best)
    trial's weights stay (a failed run is chosen only when every run failed)."""
    study = _tune(tiny_model, "kf", top=3, trainer=ScriptedTrainer(with_model=True, one_class=True))
    assert all(t.user_attrs.get("failed_run") for t in study.trials)
    best = KeptWeights.of(study.best_trial)
    assert best is not None
    assert [f.name for f in _stored(workdir / "studies" / "kf.artifacts")] == [best.artifact_id]


def worse_as_trained(hp: HParams, seed: int) -> float:
    """Scores that fall in the order promising-first trains the grid: (16, 1e-4), (8, 1e-4), (16, 1e-3), ..."""
    return round(0.9 - abs(hp.learning_rate - 1e-4) * 100 - abs(hp.batch_size - 16) / 1000, 6)


def test_a_trial_that_cannot_be_chosen_uploads_nothing(workdir: Path, tiny_model: Path) -> None:
    study = _tune(tiny_model, "k3", trainer=ScriptedTrainer(score=worse_as_trained, with_model=True))
    uploaded = [t.number for t in study.trials if KEPT_WEIGHTS_ATTR in t.user_attrs]
    assert uploaded == [0] and study.best_trial.number == 0  # the first was the best; no later one could be
    assert len(_stored(workdir / "studies" / "k3.artifacts")) == 1


def test_a_changed_file_fails_its_checksum_and_a_deleted_one_is_named(workdir: Path, tiny_model: Path) -> None:
    study = _tune(tiny_model, "k4")
    kept = KeptWeights.of(study.best_trial)
    assert kept is not None
    store = open_artifact_store(str(workdir / "studies" / "k4.artifacts"))
    assert fetch_weights(store, kept, (workdir / "a").resolve()).stat().st_size == kept.size
    stored = workdir / "studies" / "k4.artifacts" / kept.artifact_id
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(WeightsUnavailable, match="checksum differs"):
        fetch_weights(store, kept, workdir / "b")
    stored.unlink()
    with pytest.raises(WeightsUnavailable, match="not in the store"):
        fetch_weights(store, kept, workdir / "c")


class DiesWhileWriting:
    """A folder store whose next write stops half-way, as a kill -9 leaves it."""

    def __init__(self, folder: Path) -> None:
        from optuna.artifacts import FileSystemArtifactStore

        self.inner, self.folder, self.armed = FileSystemArtifactStore(folder), folder, True

    def write(self, artifact_id: str, body: io.BufferedReader) -> None:
        if self.armed and not artifact_id.startswith(".probe"):
            self.armed = False
            (self.folder / artifact_id).write_bytes(body.read()[:1000])
            raise SystemExit("killed during the upload")
        self.inner.write(artifact_id, body)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def _store_in_use(monkeypatch: pytest.MonkeyPatch, store: DiesWhileWriting) -> Path:
    """Every store the code opens is ``store``; its folder."""
    import optuna_seqclf.study.artifacts as artifacts

    monkeypatch.setattr(artifacts, "_store_of", lambda spec: store)
    return store.folder


def test_a_kill_during_an_upload_leaves_nothing_reusable(workdir: Path, tiny_model: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _store_in_use(monkeypatch, DiesWhileWriting(_made(workdir / "studies" / "k5.artifacts")))
    with pytest.raises(SystemExit):
        _tune(tiny_model, "k5")
    study = load_study("k5", open_storage("sqlite:///studies/k5.db"), "sqlite:///studies/k5.db")
    [dead] = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert KEPT_WEIGHTS_ATTR not in dead.user_attrs  # and no artifact was recorded:
    assert not any(key.startswith("artifacts:") for key in dead.system_attrs)
    half = _stored(folder)
    assert len(half) == 1 and half[0].stat().st_size == 1000  # the half-written file: no trial names it
    study = _tune(tiny_model, "k5")  # resumed: the interrupted point is trained again, its upload completes
    complete = [t for t in study.trials if KEPT_WEIGHTS_ATTR in t.user_attrs]
    assert complete and all(t.state == optuna.trial.TrialState.COMPLETE for t in complete)
    assert all(KeptWeights.of(t).artifact_id != half[0].name for t in complete)  # type: ignore[union-attr]


def test_an_unusable_store_is_one_line_before_anything_trains(workdir: Path, tiny_model: Path) -> None:
    (workdir / "a-file").write_text("x")
    trainer = ScriptedTrainer(with_model=True)
    for spec, message in ((str(workdir / "a-file" / "store"), "cannot be written"),
                          ("ftp://host/x", "use a folder, s3://BUCKET or gs://BUCKET"),
                          ("s3://bucket/prefix", "give the bucket only")):
        with pytest.raises(ConfigError, match=message) as caught:
            _tune(tiny_model, "k6", trainer=trainer, artifact_store=spec)
        assert "\n" not in str(caught.value) and caught.value.field == "artifact_store"
    assert trainer.calls == []
    with pytest.raises(ConfigError, match="folder not found"):
        reading_store(str(workdir / "nowhere"), given=True)
    store, why = reading_store(str(workdir / "nowhere"), given=False)
    assert store is None and "is not on this machine" in str(why)


def test_none_keeps_nothing(workdir: Path, tiny_model: Path) -> None:
    study = _tune(tiny_model, "k7", artifact_store="none")
    assert not any(KEPT_WEIGHTS_ATTR in t.user_attrs for t in study.trials)
    assert not (workdir / "studies" / "k7.artifacts").exists()


def test_an_s3_bucket_keeps_the_weights_train_reuses(workdir: Path, tiny_model: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--artifact-store s3://BUCKET through Optuna's Boto3ArtifactStore, against moto's in-process S3."""
    import boto3
    from moto import mock_aws

    from optuna_seqclf import train_replicas

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "test"),
                        ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="weights")
        study = _tune(tiny_model, "k8", artifact_store="s3://weights")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="weights").get("Contents", [])]
        assert keys == [KeptWeights.of(study.best_trial).artifact_id]  # type: ignore[union-attr]
        result = train_replicas("k8", "sqlite:///studies/k8.db", workdir / "out", seeds=(1,), tracking=None,
                                trainer=ScriptedTrainer(with_model=True))
        assert result.replicas[0].from_trial == study.best_trial.number
        with pytest.raises(ConfigError, match="--artifact-store s3://missing: cannot be written"):
            _tune(tiny_model, "k9", artifact_store="s3://missing")


class RefusesDeletes(DiesWhileWriting):
    """A folder store whose deletions fail (a bucket without delete permission, a network error)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.armed = False  # its writes succeed

    def remove(self, artifact_id: str) -> None:
        if not artifact_id.startswith(".probe"):
            raise PermissionError("AccessDenied: s3:DeleteObject")
        self.inner.remove(artifact_id)


def test_a_store_that_refuses_deletes_costs_disk_never_a_trial(workdir: Path, tiny_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _store_in_use(monkeypatch, RefusesDeletes(_made(workdir / "studies" / "k10.artifacts")))
    study = _tune(tiny_model, "k10")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len(_stored(folder)) == 4  # every trial was the best so far when it completed; none could be deleted


def test_a_trial_completed_by_another_worker_during_a_sweep_keeps_its_weights(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep lists the trials before it ranks them: a trial another worker completes in between is
    judged by the next sweep, with itself in the ranking (two PostgreSQL machines once lost the best's
    weights this way)."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    import optuna_seqclf.study.artifacts as artifacts

    study = _tune(tiny_model, "k11")
    folder = workdir / "studies" / "k11.artifacts"
    from optuna.distributions import CategoricalDistribution

    other = study.ask({"batch_size": CategoricalDistribution([8, 16]),  # another worker's trial, running when
                       "learning_rate": CategoricalDistribution([1e-3, 1e-4])})  # this sweep starts
    weights = workdir / "w.safetensors"
    weights.write_bytes(b"weights")
    artifact_id = upload_artifact(artifact_store=FileSystemArtifactStore(folder), file_path=str(weights),
                                  study_or_trial=other)
    ranking = artifacts.weights_to_keep

    def completed_meanwhile(s: optuna.Study) -> set[int]:
        if other.number not in {t.number for t in s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}:
            s.tell(other, 0.99)
        return ranking(s)

    monkeypatch.setattr(artifacts, "weights_to_keep", completed_meanwhile)
    artifacts.Sweeper(FileSystemArtifactStore(folder)).sweep(study)
    assert (folder / artifact_id).exists()
