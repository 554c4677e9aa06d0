"""Train the final models: the study's best (batch size, learning rate), one replica per seed.

Each replica is built in a hidden temporary folder and renamed into place only when every file is
written, so a replica folder that exists is complete, and a rerun trains only the missing seeds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optuna_seqclf.errors import ModelLoadError, OutputError, StudyError
from optuna_seqclf.hooks import Progress, StepHook, silent
from optuna_seqclf.interrupts import InterruptGate, gated_interrupts
from optuna_seqclf.predict.predictor import Predictor
from optuna_seqclf.settings import DEFAULT_SEEDS, HParams, MachineSettings, TrainSettings
from optuna_seqclf.study.artifacts import KeptWeights, WeightsUnavailable, fetch_weights, kept_by_seed, reading_store
from optuna_seqclf.study.queue import incomplete_grid
from optuna_seqclf.study.record import StudyRecord
from optuna_seqclf.study.schema import HISTORY_ATTR, REPLICAS_ATTR
from optuna_seqclf.study.selection import Selection, select
from optuna_seqclf.study.storage import load_study, open_storage
from optuna_seqclf.summary import Summary
from optuna_seqclf.training.loop import FineTuneResult, Trainer, evaluate, fine_tune, from_weights
from optuna_seqclf.training.metrics import below_baseline_reason, classification_metrics, failed_run_reason
from optuna_seqclf.training.model import trained_on
from optuna_seqclf.training.prepared import Prepared, prepare
from optuna_seqclf.training.replica_folder import (
    COMPLETE_MARKER,
    ENSEMBLE_FILE,
    SUMMARY_FILE,
    read_results,
    remove_stale_temp,
    replica_dir_name,
    write_json_atomic,
    write_replica,
)
from optuna_seqclf.training.tracking import Tracker, check_log_dir, log_to, make_tracker

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial


@dataclass(frozen=True)
class ReplicaResult:
    seed: int
    path: str
    dev_f1: float
    dev_accuracy: float
    test_f1: float
    test_accuracy: float
    reused: bool = False  # its folder was complete already: read, not written
    failed_run: str | None = None  # why it is no better than the majority class on dev
    from_trial: int | None = None  # the study's trial whose kept weights it is (None: trained by `train`)


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
class EnsembleResult:
    """The replicas' seed ensemble (softmax probabilities averaged) on dev and test, as ``predict`` runs it."""

    seeds: tuple[int, ...]
    dev_f1: float
    dev_micro_f1: float
    dev_accuracy: float
    test_f1: float
    test_micro_f1: float
    test_accuracy: float


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
                   on_step: StepHook | None = None, replace_failed: bool = False,
                   trainer: Trainer = fine_tune, artifact_store: str | None = None) -> ReplicasResult:
    """Train one replica per seed with the study's best point; reuse replicas already complete. The data
    folder, model, tokenizer and training settings are the ones the study recorded; ``data_dir``, ``model`` and
    ``tokenizer`` replace them. A replica no better than the majority class is a failed run: kept on disk,
    reported, left out of the mean and the ensemble (while another exists); with ``replace_failed`` the next
    unused seed is trained in its place (at most ``len(seeds)`` times). ``trainer`` trains each replica
    (``fine_tune`` unless a caller swaps it). A seed whose (point, seed) a trial of the study trained and kept
    (``study.artifacts``) is made from that trial's weights, from ``artifact_store`` (default: the store the
    study recorded; ``none``: train every seed). The calling process's settings are left as they are."""
    study = load_study(study_name, open_storage(storage_url, must_exist=True), storage_url)
    record = StudyRecord.from_study(study)
    selection = select(study)
    best = selection.best
    if best is None:
        raise StudyError(f"study {study_name!r} has no COMPLETE trial yet; run `optuna-seqclf tune` to finish it")
    hp, machine = best.point, machine or MachineSettings()
    if note := incomplete_grid(study, record.space):
        progress(f"The grid of {study_name!r} is not complete: {note}; the best of the points done is used. "
                 "Run `tune` to finish the grid first.")
    data = replace(record.data, data_dir=Path(data_dir)) if data_dir else record.data
    swapped: dict[str, Any] = {"model": model, "tokenizer": tokenizer}
    settings = replace(record.settings, **{k: v for k, v in swapped.items() if v is not None})
    check_writable(output_dir)
    check_log_dir(log_dir)
    store, no_store = reading_store(artifact_store or record.artifact_store, given=artifact_store is not None)
    prepared = prepared or prepare(data, settings, machine)
    progress(_best_line(study_name, selection, len(seeds), output_dir))
    job = _ReplicaJob(prepared, settings, machine, hp, record.task_name, make_tracker(log_dir, study_name), study_name,
                      trainer, _kept_weights(study, hp, no_store, progress), store)

    def folder(seed: int) -> Path:
        return output_dir / replica_dir_name(record.config_name, record.task_name, hp, settings.epochs_label, seed)

    results = job.train_all(list(seeds), folder, progress, on_step, replace_failed)
    progress(_origin_line(results))
    kept = [r for r in results if r.failed_run is None] or results
    ensemble = job.score_ensemble({r.seed: Path(r.path) for r in kept})
    progress(f"ensemble of seeds {','.join(str(r.seed) for r in kept)}: dev F1 {ensemble.dev_f1:.4f}, "
             f"test F1 {ensemble.test_f1:.4f}")
    summary = Summary.of([asdict(r) for r in kept])
    summary_all = Summary.of([asdict(r) for r in results]) if len(kept) < len(results) else None
    out = ReplicasResult(study_name, hp, best.value, output_dir, results, summary, ensemble, summary_all)
    _write_summaries(study, out, storage_url, selection)
    return out


def _kept_weights(study: optuna.Study, hp: HParams, no_store: str | None, progress: Progress) -> dict[int, FrozenTrial]:
    """Seed -> the study's trial whose kept weights can be that seed's replica (none when ``no_store`` says
    why the store cannot be read)."""
    kept = kept_by_seed(study, hp)
    if kept and no_store:
        progress(f"The study kept the weights of seed(s) {','.join(map(str, sorted(kept)))}, but {no_store}: "
                 "training them")
        return {}
    return kept


def _write_summaries(study: optuna.Study, out: ReplicasResult, storage_url: str, selection: Selection) -> None:
    """The ensemble's and the replicas' summaries into the output folder, and onto the study for ``report``."""
    payload = {"study_name": out.study_name, "storage": storage_url,
               "best_trial": None if selection.best is None else selection.best.number,
               "selection": selection.to_json(), **_summary_json(out)}
    write_json_atomic(out.output_dir / ENSEMBLE_FILE, asdict(out.ensemble))
    write_json_atomic(out.output_dir / SUMMARY_FILE, payload)
    study.set_user_attr(REPLICAS_ATTR, {**payload, "output_dir": str(out.output_dir.resolve())})


def _best_line(study_name: str, selection: Selection, replicas: int, output_dir: Path) -> str:
    best = selection.best
    assert best is not None
    evidence = (f"mean dev score {selection.value:.4f} over seeds {','.join(map(str, selection.confirmed[0].seeds))}"
                if selection.confirmed else f"dev score {best.value:.4f}, trial {best.number}")
    return (f"Best configuration of {study_name!r}: batch size {best.point.batch_size}, learning rate "
            f"{best.point.learning_rate!r} ({evidence}); training {replicas} replicas in {output_dir}")


def _origin_line(results: list[ReplicaResult]) -> str:
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


def _summary_json(out: ReplicasResult) -> dict[str, Any]:
    """replicas_summary.json's scores: every replica (failed runs marked), the mean of those not failed (at
    the top level, as before failed runs were marked), of all seeds, and of their ensemble."""
    # best_dev_f1: the file's key since 0.1, whatever the study's metric
    return {"best_dev_f1": out.best_dev_value, "params": asdict(out.params), "seeds": [r.seed for r in out.replicas],
            "replicas": [asdict(r) for r in out.replicas], "failed_runs": [r.seed for r in out.failed],
            **out.summary.to_json(), "all_seeds": None if out.summary_all is None else out.summary_all.to_json(),
            "ensemble": asdict(out.ensemble)}


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
    trainer: Trainer = fine_tune  # what trains each seed; tests give a scripted one
    kept: dict[int, FrozenTrial] = field(default_factory=dict)  # seed -> the study's trial that kept its weights
    store: ArtifactStore | None = None  # where those weights are
    # seed -> (dev, test) class probabilities of the replicas this call trained, for the ensemble's scores
    probabilities: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def train_all(self, seeds: list[int], folder: Callable[[int], Path], progress: Progress,
                  on_step: StepHook | None, replace_failed: bool) -> list[ReplicaResult]:
        """Each seed's replica into its folder, in order; one that is complete already is read, not trained.
        With ``replace_failed``, a failed run adds the next unused seed (at most ``len(seeds)`` more)."""
        results, queue, spare = [], list(seeds), len(seeds) if replace_failed else 0
        with gated_interrupts() as gate:
            while queue:
                seed = queue.pop(0)
                final = folder(seed)
                if (final / COMPLETE_MARKER).exists():
                    result = self._read_replica(final, seed)
                    progress(f"seed {seed}: {final.name} exists, reused")
                else:
                    gate.check()
                    result = self.make(seed, final, _gated(gate, on_step), progress)
                    origin = "" if result.from_trial is None else f"from trial {result.from_trial}'s kept weights, "
                    progress(f"seed {seed}: {origin}dev F1 {result.dev_f1:.4f}, test F1 {result.test_f1:.4f} "
                             f"-> {final}")
                results.append(result)
                if result.failed_run is not None:
                    progress(f"seed {seed}: FAILED RUN, {result.failed_run}"
                             + ("; training the next unused seed instead" if spare else ""))
                    if spare:
                        spare -= 1
                        queue.append(max([*seeds, *(r.seed for r in results), *queue]) + 1)
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

    def make(self, seed: int, final: Path, on_step: StepHook, progress: Progress) -> ReplicaResult:
        """The seed's replica from the study's kept weights when they can be used, else trained."""
        trial = self.kept.get(seed)
        if trial is not None:
            try:
                return self.train(seed, final, on_step, (*self.from_trial(trial), trial.number))
            except WeightsUnavailable as why:
                progress(f"seed {seed}: the kept weights of trial {trial.number} cannot be used ({why}); training it")
        return self.train(seed, final, on_step)

    def from_trial(self, trial: FrozenTrial) -> tuple[FineTuneResult, dict[str, Any]]:
        """The trial's kept weights, checked, loaded and evaluated on dev, as ``fine_tune`` returns a model;
        and where they came from (for training_args.json)."""
        kept = KeptWeights.of(trial)
        assert kept is not None
        mine = json.loads(json.dumps(asdict(self.settings)))
        if kept.settings != mine:
            what = ", ".join(f"{k} {kept.settings.get(k)!r} (now {v!r})" for k, v in mine.items()
                             if kept.settings.get(k) != v)
            raise WeightsUnavailable(f"trained with other settings: {what}")
        if kept.data_fingerprint != self.prepared.corpus.fingerprint:
            raise WeightsUnavailable("trained on other data files")
        with tempfile.TemporaryDirectory(prefix="seqclf-weights-") as tmp:
            try:
                tuned = from_weights(self.settings.model, self.prepared.corpus.id2label,
                                     fetch_weights(self.store, kept, Path(tmp)),
                                     self.prepared.encoded(self.settings.max_seq_length).dev, self.prepared.tokenizer,
                                     self.machine, kept.train_metrics, kept.log_history,
                                     trial.user_attrs.get(HISTORY_ATTR, []))
            except ModelLoadError as exc:
                raise WeightsUnavailable(str(exc)) from None
        return tuned, {"trained_on": kept.trained_on, "from_trial": {
            "study": self.study_name, "trial": trial.number, "artifact_id": kept.artifact_id, "sha256": kept.sha256}}

    def train(self, seed: int, final: Path, on_step: StepHook,
              taken: tuple[FineTuneResult, dict[str, Any], int] | None = None) -> ReplicaResult:
        """Train (or take ``taken``: a trial's kept weights, where they came from, the trial), evaluate and write
        one replica into a temporary folder, then rename it to ``final``."""
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
            if taken is not None:
                tuned, origin, _ = taken
            else:
                tuned = self.trainer(s.model, self.prepared.tokenizer, encoded.train, encoded.dev,
                                     self.prepared.corpus.id2label, hp, s, seed, machine=self.machine,
                                     on_step=on_step, on_log=log_to(run))
                origin = {"trained_on": trained_on(self.machine), "from_trial": None}
            test = evaluate(tuned.model, encoded.test, self.prepared.tokenizer, self.machine.eval_batch_size,
                            self.machine.precision)
            for split, metrics in (("eval", tuned.dev.metrics), ("test", test.metrics)):
                for name in ("f1", "accuracy", "loss"):
                    run.track(name, metrics[name], step=int(tuned.train_metrics.get("epoch", 0)), subset=split)
            failed = failed_run_reason(np.asarray(encoded.dev["labels"]), tuned.dev.predictions,
                                       tuned.dev.metrics["f1"], self.prepared.corpus.label_names)
            run.note("failed_run", failed or "")
            write_replica(tmp, tuned, test, self.prepared, hp, s, seed, self.task_name, failed, origin)
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
                             test.metrics["f1"], test.metrics["accuracy"], failed_run=failed,
                             from_trial=None if taken is None else taken[2])

    def _read_replica(self, path: Path, seed: int) -> ReplicaResult:
        """A complete replica's scores; replicas written before failed runs were marked are judged by their
        dev F1 against the majority baseline."""
        results = read_results(path)
        failed = results.get("failed_run")
        if "failed_run" not in results:
            labels = np.asarray(self.prepared.encoded(self.settings.max_seq_length).dev["labels"])
            failed = below_baseline_reason(labels, float(results["eval_f1"]))
        return ReplicaResult(seed, str(path), results["eval_f1"], results["eval_accuracy"], results["test_f1"],
                             results["test_accuracy"], reused=True, failed_run=failed,
                             from_trial=results.get("from_trial"))
