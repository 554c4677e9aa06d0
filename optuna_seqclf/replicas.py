"""Train the final models: the study's best (batch size, learning rate), one replica per seed.

Each replica is built in a hidden temporary folder and renamed into place only when every file is
written, so a replica folder that exists is complete, and a rerun trains only the missing seeds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .config import DEFAULT_SEEDS, HParams, MachineSettings, TrainSettings
from .errors import OutputError, StudyError
from .grid import REPLICAS_ATTR
from .hooks import Progress, StepHook, silent
from .inputs import Prepared, prepare
from .interrupts import InterruptGate, gated_interrupts
from .predict import COMPLETE_MARKER, SUMMARY_FILE, Predictor
from .replica_files import read_results, remove_stale_temp, write_json_atomic, write_replica
from .storage import open_storage
from .study import StudyRecord, best_trial, load_study
from .summary import Summary
from .tracking import Tracker, check_log_dir, log_to, make_tracker
from .train import classification_metrics, evaluate, fine_tune


@dataclass(frozen=True)
class ReplicaResult:
    seed: int
    path: str
    dev_f1: float
    dev_accuracy: float
    test_f1: float
    test_accuracy: float
    reused: bool = False


@dataclass(frozen=True)
class ReplicasResult:
    study_name: str
    params: HParams
    best_dev_f1: float
    output_dir: Path
    replicas: list[ReplicaResult]
    summary: Summary
    ensemble: EnsembleResult


@dataclass(frozen=True)
class EnsembleResult:
    """The replicas' seed ensemble (softmax probabilities averaged) on dev and test, as ``predict`` runs it."""

    seeds: tuple[int, ...]
    dev_f1: float
    dev_micro_f1: float
    dev_accuracy: float
    test_f1: float
    test_micro_f1: float
    test_accuracy: float


ENSEMBLE_FILE = "ensemble_results.json"


def replica_dir_name(config_name: str, task_name: str, hp: HParams, epochs_label: str, seed: int) -> str:
    """``<config>-model_<task>_<bs>_<lr>_<epochs>_<seed>``, the reference's naming."""
    return f"{config_name}-model_{task_name}_{hp.batch_size}_{hp.learning_rate!r}_{epochs_label}_{seed}"


def check_writable(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and prove we can write into it (before any training)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{output_dir}: output folder cannot be written ({exc.strerror})") from None


def train_replicas(study_name: str, storage_url: str, output_dir: Path, seeds: Sequence[int] = DEFAULT_SEEDS,
                   *, data_dir: Path | None = None, model: str | None = None, tokenizer: str | None = None,
                   machine: MachineSettings | None = None, log_dir: Path | None = Path("logs"),
                   progress: Progress = silent, prepared: Prepared | None = None,
                   on_step: StepHook | None = None) -> ReplicasResult:
    """Train one replica per seed with the study's best point; reuse replicas already complete.

    The data folder, model, tokenizer and training settings are the ones the study recorded; ``data_dir``,
    ``model`` and ``tokenizer`` replace them. The calling process's settings are left as they are.
    """
    storage = open_storage(storage_url, must_exist=True)
    study = load_study(study_name, storage, storage_url)
    record = StudyRecord.from_study(study)
    best = best_trial(study)
    if best is None:
        raise StudyError(f"study {study_name!r} has no COMPLETE trial yet; run `optuna-seqclf tune` to finish it")
    hp, machine = best.point, machine or MachineSettings()
    data = replace(record.data, data_dir=Path(data_dir)) if data_dir else record.data
    swapped = {"model": model, "tokenizer": tokenizer}
    settings = replace(record.settings, **{k: v for k, v in swapped.items() if v is not None})
    check_writable(output_dir)
    check_log_dir(log_dir)
    prepared = prepared or prepare(data, settings, machine)
    progress(f"Best configuration of {study_name!r}: batch size {hp.batch_size}, learning rate {hp.learning_rate!r} "
             f"(dev F1 {best.value:.4f}, trial {best.number}); training {len(seeds)} replicas in {output_dir}")
    job = _ReplicaJob(prepared, settings, machine, hp, record.task_name, make_tracker(log_dir, study_name), study_name)
    folders = {seed: output_dir / replica_dir_name(record.config_name, record.task_name, hp, settings.epochs_label,
                                                   seed) for seed in seeds}
    results = job.train_all(folders, progress, on_step)
    ensemble = job.score_ensemble(folders)
    progress(f"ensemble of seeds {','.join(map(str, seeds))}: dev F1 {ensemble.dev_f1:.4f}, "
             f"test F1 {ensemble.test_f1:.4f}")
    summary = Summary.of([asdict(r) for r in results])
    payload = {
        "study_name": study_name, "storage": storage_url, "best_trial": best.number, "best_dev_f1": best.value,
        "params": asdict(hp), "seeds": list(seeds), "replicas": [asdict(r) for r in results], **summary.to_json(),
        "ensemble": asdict(ensemble),
    }
    write_json_atomic(output_dir / ENSEMBLE_FILE, asdict(ensemble))
    write_json_atomic(output_dir / SUMMARY_FILE, payload)
    study.set_user_attr(REPLICAS_ATTR, {**payload, "output_dir": str(output_dir.resolve())})  # for `report`
    return ReplicasResult(study_name, hp, best.value, output_dir, results, summary, ensemble)


def _gated(gate: InterruptGate, on_step: StepHook | None) -> StepHook:
    """A step hook where Ctrl-C stops between two steps (the unfinished replica is removed), then ``on_step``."""

    def after_step(done: int, total: int) -> None:
        gate.check()
        if on_step is not None:
            on_step(done, total)

    return after_step


@dataclass
class _ReplicaJob:
    """What every replica of one call shares: inputs, settings, the best point, the tracker."""

    prepared: Prepared
    settings: TrainSettings
    machine: MachineSettings
    hp: HParams
    task_name: str
    tracker: Tracker
    study_name: str
    # seed -> (dev, test) class probabilities of the replicas this call trained, for the ensemble's scores
    probabilities: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def train_all(self, folders: dict[int, Path], progress: Progress, on_step: StepHook | None) -> list[ReplicaResult]:
        """Each seed's replica into its folder, in order; one that is complete already is read, not trained."""
        results = []
        with gated_interrupts() as gate:
            for seed, final in folders.items():
                if (final / COMPLETE_MARKER).exists():
                    results.append(_read_replica(final, seed))
                    progress(f"seed {seed}: {final.name} exists, reused")
                    continue
                gate.check()
                result = self.train(seed, final, _gated(gate, on_step))
                results.append(result)
                progress(f"seed {seed}: dev F1 {result.dev_f1:.4f}, test F1 {result.test_f1:.4f} -> {final}")
        return results

    def score_ensemble(self, folders: dict[int, Path]) -> EnsembleResult:
        """The replicas' averaged probabilities scored on dev and test, and tracked as an Aim run of its own.

        A replica trained by this call brings the probabilities its own evaluation computed; one reused from
        an earlier run is loaded back from its folder, as ``predict`` loads it.
        """
        corpus, scores = self.prepared.corpus, {}
        reused = [seed for seed in folders if seed not in self.probabilities]
        loaded = Predictor([folders[s] for s in reused], tuple(reused), self.machine, self.settings.max_seq_length) \
            if reused else None
        if loaded is not None and loaded.labels != corpus.label_names:
            raise StudyError(f"{folders[reused[0]]}: its labels {loaded.labels} are not the data's "
                             f"{corpus.label_names}; train it again in another --output-dir")
        for index, name in enumerate(("dev", "test")):
            split = corpus.split(name)
            total = sum(self.probabilities[seed][index] for seed in folders if seed not in reused)
            if loaded is not None:
                total = total + loaded.predict_proba(split.texts, split.pairs) * len(reused)
            truth = np.array([corpus.label2id[label] for label in split.labels])
            metrics = classification_metrics(truth, np.asarray(total).argmax(axis=1))
            scores.update({f"{name}_{key}": metrics[key] for key in ("f1", "micro_f1", "accuracy")})
        self._track_ensemble(tuple(folders), scores)
        return EnsembleResult(tuple(folders), **scores)

    def _track_ensemble(self, seeds: tuple[int, ...], scores: dict[str, float]) -> None:
        run = self.tracker.start(f"{self.study_name}/ensemble", {
            "study": self.study_name, "model": self.settings.model, "batch_size": self.hp.batch_size,
            "learning_rate": self.hp.learning_rate, "seeds": list(seeds), "ensemble": True})
        try:
            for key, value in scores.items():
                split, metric = key.split("_", 1)
                run.track(metric, value, step=0, subset="eval" if split == "dev" else "test")
        finally:
            run.close()

    def train(self, seed: int, final: Path, on_step: StepHook) -> ReplicaResult:
        """Train, evaluate and write one replica into a temporary folder, then rename it to ``final``."""
        remove_stale_temp(final)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        s, hp = self.settings, self.hp
        run = self.tracker.start(f"{self.study_name}/replica-seed{seed}", {
            "study": self.study_name, "model": s.model, "batch_size": hp.batch_size,
            "learning_rate": hp.learning_rate, "seed": seed, "epochs": s.epochs, "replica": True,
        })
        encoded = self.prepared.encoded(s.max_seq_length)
        try:
            tmp.mkdir(parents=True)  # the replica in progress; renamed into place when complete
            tuned = fine_tune(s.model, self.prepared.tokenizer, encoded.train, encoded.dev,
                              self.prepared.corpus.id2label, hp, s, seed, machine=self.machine, on_step=on_step,
                              on_log=log_to(run))
            test = evaluate(tuned.model, encoded.test, self.prepared.tokenizer, self.machine.eval_batch_size,
                            self.machine.precision)
            for split, metrics in (("eval", tuned.dev.metrics), ("test", test.metrics)):
                for name in ("f1", "accuracy", "loss"):
                    run.track(name, metrics[name], step=int(tuned.train_metrics.get("epoch", 0)), subset=split)
            write_replica(tmp, tuned, test, self.prepared, hp, s, seed, self.task_name)
            os.replace(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"{final}: replica could not be written ({exc.strerror or exc}); "
                              "nothing was kept for this seed") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            run.close()
        self.probabilities[seed] = (tuned.dev.probabilities, test.probabilities)
        return ReplicaResult(seed, str(final), tuned.dev.metrics["f1"], tuned.dev.metrics["accuracy"],
                             test.metrics["f1"], test.metrics["accuracy"])


def _read_replica(path: Path, seed: int) -> ReplicaResult:
    results = read_results(path)
    return ReplicaResult(seed, str(path), results["eval_f1"], results["eval_accuracy"], results["test_f1"],
                         results["test_accuracy"], reused=True)
