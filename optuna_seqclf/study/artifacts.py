"""Trial weights kept as Optuna artifacts, so that ``train`` reuses a trial as a replica instead of training
its (point, seed) again.

A trial that completes and could still be chosen uploads its weights (``upload_artifact``: the store
first, then the artifact's record on the trial, so optuna-dashboard lists it) and then records
``KEPT_WEIGHTS_ATTR`` with the file's sha256, the settings and data that trained it and the machine it ran
on, all before the trial is COMPLETE. A crash anywhere in between leaves a trial that is not COMPLETE, or an
artifact without that record: neither is ever reused. ``Sweeper`` deletes the weights of trials that can no
longer be chosen (``weights_to_keep``), so the store holds a bounded number of models.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_seqclf.errors import ConfigError, first_line
from optuna_seqclf.settings import HParams
from optuna_seqclf.study.queue import TrialResult, claimed_point, confirm_seed_of, grid_trials, point_status
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.schema import DUPLICATE_ATTR, KEPT_WEIGHTS_ATTR
from optuna_seqclf.study.selection import select

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

NO_STORE = "none"  # --artifact-store none: keep no weights; every replica is trained
_ARTIFACT_PREFIX = "artifacts:"  # where optuna.artifacts records an artifact on a trial (system attrs)


class WeightsUnavailable(Exception):
    """Why a trial's kept weights cannot be used; ``train`` says it and trains the replica instead."""


def default_artifact_store(storage_url: str, study_name: str) -> str:
    """Beside the SQLite file (``studies/NAME.artifacts``); for a server storage, ``studies/NAME.artifacts``
    on each machine (give ``--artifact-store`` a shared folder or bucket for ``train`` to reuse weights
    from other machines)."""
    folder = Path("studies")
    if storage_url.startswith("sqlite:///"):
        folder = Path(storage_url.removeprefix("sqlite:///")).parent
    return str((folder / f"{study_name}.artifacts").resolve())


def resolve_store(spec: str) -> str:
    """``spec`` as the study records it: a folder made absolute; a bucket URL or ``none`` as given."""
    if spec == NO_STORE or "://" in spec:
        return spec
    return str(Path(spec).expanduser().resolve())


def check_artifact_store(spec: str) -> None:
    """Refuse a store that cannot be used (a one-line ConfigError), without creating anything: a folder must
    be one, or be creatable in its nearest existing parent; a bucket is opened as ``open_artifact_store``
    does it."""
    if spec == NO_STORE:
        return
    if "://" in spec:
        open_artifact_store(spec)
        return
    folder = Path(spec)
    parent = next(p for p in (folder, *folder.parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        what = "is not a folder" if parent == folder else f"{parent} is not a writable folder"
        raise ConfigError(f"--artifact-store {spec}: cannot be written ({what})", "artifact_store")


def open_artifact_store(spec: str) -> ArtifactStore | None:
    """The store ``spec`` names (a folder, created if needed; ``s3://BUCKET``; ``gs://BUCKET``), proved
    writable by writing and removing a probe; None for ``none``. A store that cannot be used is a one-line
    ConfigError."""
    if spec == NO_STORE:
        return None
    try:
        store = _store_of(spec)
        probe = f".probe-{uuid.uuid4()}"
        store.write(probe, io.BytesIO(b""))
        store.remove(probe)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"--artifact-store {spec}: cannot be written ({type(exc).__name__}: {first_line(exc)})",
                          "artifact_store") from None
    return store


def reading_store(spec: str, *, given: bool) -> tuple[ArtifactStore | None, str | None]:
    """The store ``train`` reads kept weights from, or None and why not. A store the user ``given`` must
    work (ConfigError otherwise); the one the study recorded may be missing here (another machine)."""
    if spec == NO_STORE:
        return None, "no artifact store is used (--artifact-store none)"
    if given:
        if "://" not in spec and not Path(spec).is_dir():
            raise ConfigError(f"--artifact-store {spec}: folder not found", "artifact_store")
        return open_artifact_store(spec), None
    if "://" not in spec and not Path(spec).is_dir():
        return None, f"its artifact store {spec} is not on this machine (give --artifact-store)"
    try:
        return _store_of(spec), None
    except Exception as exc:
        return None, f"its artifact store {spec} cannot be opened ({first_line(exc)})"


def _store_of(spec: str) -> ArtifactStore:
    from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore, GCSArtifactStore

    scheme, _, rest = spec.partition("://")
    if not rest:
        Path(spec).mkdir(parents=True, exist_ok=True)
        return FileSystemArtifactStore(spec)
    bucket, _, prefix = rest.partition("/")
    if scheme not in ("s3", "gs"):
        raise ConfigError(f"--artifact-store {spec}: use a folder, s3://BUCKET or gs://BUCKET", "artifact_store")
    if prefix:
        raise ConfigError(f"--artifact-store {spec}: give the bucket only ({scheme}://{bucket}); Optuna's "
                          "bucket stores keep artifacts at its top level", "artifact_store")
    return Boto3ArtifactStore(bucket) if scheme == "s3" else GCSArtifactStore(bucket)


@dataclass(frozen=True)
class KeptWeights:
    """What ``KEPT_WEIGHTS_ATTR`` records: the artifact, its checksum, and what trained it."""

    artifact_id: str
    sha256: str
    size: int
    seed: int
    settings: dict[str, Any]  # the TrainSettings that trained it (``asdict``)
    data_fingerprint: str
    trained_on: dict[str, Any]  # device, precision, threads, torch version: weights are identical only on equal ones
    train_metrics: dict[str, float] = field(default_factory=dict)
    log_history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def of(cls, trial: FrozenTrial) -> KeptWeights | None:
        raw = trial.user_attrs.get(KEPT_WEIGHTS_ATTR)
        return cls(**raw) if isinstance(raw, dict) else None


def upload_weights(trial: optuna.Trial, store: ArtifactStore, file: Path, kept: KeptWeights) -> KeptWeights:
    """Upload ``file`` as the trial's artifact, then record ``kept`` (with the artifact's id and checksum)."""
    from optuna.artifacts import upload_artifact

    digest, size = sha256_of(file)
    artifact_id = upload_artifact(artifact_store=store, file_path=str(file), study_or_trial=trial,
                                  mimetype="application/octet-stream")
    done = KeptWeights(**{**asdict(kept), "artifact_id": artifact_id, "sha256": digest, "size": size})
    trial.set_user_attr(KEPT_WEIGHTS_ATTR, json.loads(json.dumps(asdict(done))))
    return done


def fetch_weights(store: ArtifactStore | None, kept: KeptWeights, dest: Path) -> Path:
    """Download the kept weights into the folder ``dest`` and check their checksum; WeightsUnavailable says
    why they cannot be used."""
    from optuna.artifacts import download_artifact
    from optuna.artifacts.exceptions import ArtifactNotFound

    if store is None:
        raise WeightsUnavailable("no artifact store (--artifact-store none)")
    dest.mkdir(parents=True, exist_ok=True)
    file = dest / f"{kept.artifact_id}.safetensors"
    try:
        download_artifact(artifact_store=store, file_path=str(file), artifact_id=kept.artifact_id)
    except ArtifactNotFound:
        raise WeightsUnavailable(f"artifact {kept.artifact_id} is not in the store (deleted, or another "
                                 "machine's store: give --artifact-store)") from None
    except Exception as exc:
        raise WeightsUnavailable(f"artifact {kept.artifact_id} cannot be read ({first_line(exc)})") from None
    if sha256_of(file) != (kept.sha256, kept.size):
        raise WeightsUnavailable(f"artifact {kept.artifact_id}: checksum differs from the one recorded (corrupt)")
    return file


def sha256_of(file: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), os.path.getsize(file)


# --- which weights to keep ------------------------------------------------------------------------------

def keep_top(study: optuna.Study) -> int:
    """How many grid trials' weights can still be chosen: the confirmation stage's top, else the best one."""
    plan = StudyRecord.from_study(study).confirm_plan()
    return plan.top if plan.active else 1


def _could_be_chosen(result: TrialResult, better: int, top: int) -> bool:
    """A grid result with ``better`` complete grid results ranked above it: among the ``top`` the stage would
    confirm, or, a failed run (never confirmed; chosen only when every run failed), the best."""
    return better < (top if result.failed_run is None else 1)


def worth_keeping(study: optuna.Study, result: TrialResult, confirming: bool) -> bool:
    """Whether a trial about to complete with ``result`` could be chosen: a confirmation run always (its
    point is a candidate); a grid trial while ``_could_be_chosen`` among the complete grid trials so far."""
    if confirming:
        return True
    better = [t for t in grid_trials(study, states=(TrialState.COMPLETE,)) if t.value is not None
              and TrialResult.of(t).rank_key() < result.rank_key()]
    return _could_be_chosen(result, len(better), keep_top(study))


def weights_to_keep(study: optuna.Study) -> set[int]:
    """The trials whose weights can still become replicas: once the stage has confirmed its points, the
    chosen point's trials; before, the grid trials that ``_could_be_chosen`` and the confirmation runs of their
    points."""
    record = StudyRecord.from_study(study)
    selection = select(study)
    if selection.confirmed:
        points = {selection.confirmed[0].point}
    else:
        ranked = sorted((p.result for p in point_status(study, record.space) if p.result is not None),
                        key=TrialResult.rank_key)
        top = keep_top(study)
        points = {r.point for better, r in enumerate(ranked) if _could_be_chosen(r, better, top)}
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if DUPLICATE_ATTR not in t.user_attrs and claimed_point(t) in points
            and (confirm_seed_of(t) is None or record.confirm_plan().active)}


class Sweeper:
    """Deletes, from the store, the artifacts of finished trials whose weights can no longer be chosen
    (a failed or pruned trial's too); each once per process. A deletion the store refuses (a bucket's
    permissions, a network error) leaves the file: it costs disk, never a trial."""

    def __init__(self, store: ArtifactStore | None) -> None:
        self.store = store
        self.removed: set[str] = set()

    def sweep(self, study: optuna.Study) -> list[str]:
        if self.store is None:
            return []
        from optuna.artifacts.exceptions import ArtifactNotFound

        # The trials first, then what to keep: a trial another worker completes in between is not in the list,
        # so it is never judged against a ranking made without it (a keep-set computed before the list would
        # delete the new best's weights). A trial that has dropped out of the later ranking stays out.
        trials = study.get_trials(deepcopy=False)
        keep = weights_to_keep(study)
        gone = []
        for trial in trials:
            if not trial.state.is_finished() or (trial.number in keep and trial.state == TrialState.COMPLETE):
                continue
            for key in trial.system_attrs:
                artifact_id = key.removeprefix(_ARTIFACT_PREFIX)
                if key.startswith(_ARTIFACT_PREFIX) and artifact_id not in self.removed:
                    try:
                        self.store.remove(artifact_id)
                        gone.append(artifact_id)
                    except ArtifactNotFound:
                        pass  # removed by another worker, or in another machine's store
                    except Exception:  # see the class: the next sweep tries again
                        continue
                    self.removed.add(artifact_id)
        return gone


def kept_by_seed(study: optuna.Study, point: HParams) -> dict[int, FrozenTrial]:
    """Seed -> the COMPLETE trial of ``point`` that trained with that seed and kept its weights."""
    study_seed = StudyRecord.from_study(study).settings.seed
    out: dict[int, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if KEPT_WEIGHTS_ATTR in trial.user_attrs and DUPLICATE_ATTR not in trial.user_attrs \
                and claimed_point(trial) == point:
            seed = confirm_seed_of(trial)
            out.setdefault(study_seed if seed is None else seed, trial)
    return out
