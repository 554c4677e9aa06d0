"""One call's replicas, seed by seed: each trained (through the trainer seam) or made from a trial's kept
weights, evaluated, and written into a temporary folder that is renamed into place when complete; then the
seed ensemble's scores."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optuna_seqclf.data.corpus import encode_labels
from optuna_seqclf.errors import ModelLoadError, OutputError, StudyError
from optuna_seqclf.hooks import Progress, StepHook, silent
from optuna_seqclf.interrupts import InterruptGate, gated_interrupts
from optuna_seqclf.predict.predictor import Predictor
from optuna_seqclf.replicas.results import EnsembleResult, ReplicaResult
from optuna_seqclf.settings import HParams, MachineSettings, TrainSettings
from optuna_seqclf.study.artifacts import KeptWeights, WeightsUnavailable, fetch_weights
from optuna_seqclf.study.schema import HISTORY_ATTR
from optuna_seqclf.summary import headline_scores
from optuna_seqclf.tracking import TrackedRun, Tracker, log_to
from optuna_seqclf.training.loop import EvalResult, FineTuneResult, Trainer, evaluate, fine_tune, from_weights
from optuna_seqclf.training.memory import fit_in_memory
from optuna_seqclf.training.metrics import below_baseline_reason
from optuna_seqclf.training.model import trained_on
from optuna_seqclf.training.outputs import decide_from_probabilities, task_metrics, tune_thresholds
from optuna_seqclf.training.prepared import Prepared
from optuna_seqclf.training.replica_folder import (
    COMPLETE_MARKER,
    read_results,
    remove_stale_temp,
    results_files,
    write_replica,
)

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial


def replica_key(final: Path) -> str:
    """The key of a replica's tracked run (``Tracker.settle``): its folder, which names the seed."""
    return f"replica:{final.resolve()}"


def _gated(gate: InterruptGate, on_step: StepHook | None) -> StepHook:
    """A step hook where Ctrl-C stops between two steps (the unfinished replica is removed), then ``on_step``."""

    def after_step(done: int, total: int) -> None:
        gate.check()
        if on_step is not None:
            on_step(done, total)

    return after_step


@dataclass
class ReplicaJob:
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
        # the runs a killed `train` left open on these folders end first
        self.tracker.settle({replica_key(folder(seed)): "INTERRUPTED" for seed in seeds})
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
                    progress(f"seed {seed}: {origin}{headline_scores(self.settings.task, result.scores)} -> {final}")
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
        thresholds = None
        for index, name in enumerate(("dev", "test")):
            split = corpus.split(name)
            total = sum(self.probabilities[seed][index] for seed in folders if seed not in reused)
            if loaded is not None:
                total = total + loaded.predict_proba(split.texts, split.pairs) * len(reused)
            mean = np.asarray(total) / len(folders)  # the threshold of multi-label reads a mean, not a sum
            truth = np.asarray(encode_labels(split.labels, corpus.task, corpus.label2id))
            if name == "dev" and self.settings.thresholds == "tuned":  # the ensemble's own, on its dev mean
                thresholds = tune_thresholds(truth, mean)
            metrics = task_metrics(corpus.task, truth, decide_from_probabilities(corpus.task, mean, thresholds))
            scores.update({f"{name}_{key}": value for key, value in metrics.items()})
        self._track_ensemble(tuple(folders), scores)
        return EnsembleResult(tuple(folders), scores, thresholds)

    def _track_ensemble(self, seeds: tuple[int, ...], scores: dict[str, float]) -> None:
        run = self.tracker.start(f"{self.study_name}/ensemble", {
            "study": self.study_name, "model": self.settings.model, "batch_size": self.hp.batch_size,
            "learning_rate": self.hp.learning_rate, "seeds": list(seeds), "ensemble": True},
            {"role": "ensemble", "key": "ensemble"})
        state = "INTERRUPTED"
        try:
            for key, value in scores.items():
                split, metric = key.split("_", 1)
                run.track(metric, value, step=0, subset="eval" if split == "dev" else "test")
            state = "COMPLETE"
        finally:
            run.close(state)

    def make(self, seed: int, final: Path, on_step: StepHook, progress: Progress) -> ReplicaResult:
        """The seed's replica from the study's kept weights when they can be used, else trained."""
        trial = self.kept.get(seed)
        if trial is not None:
            try:
                return self.train(seed, final, on_step, (*self.from_trial(trial), trial.number))
            except WeightsUnavailable as why:
                progress(f"seed {seed}: the kept weights of trial {trial.number} cannot be used ({why}); training it")
        return self.train(seed, final, on_step, progress=progress)

    def from_trial(self, trial: FrozenTrial) -> tuple[FineTuneResult, dict[str, Any]]:
        """The trial's kept weights, checked, loaded and evaluated on dev, as ``fine_tune`` returns a model;
        and where they came from (for training_args.json)."""
        kept = KeptWeights.of(trial)
        assert kept is not None
        mine = json.loads(json.dumps(asdict(self.settings)))
        # a setting added since the trial was kept (task, thresholds) had its default then
        defaults = {f.name: f.default for f in fields(TrainSettings) if f.default is not MISSING}
        theirs = {**{k: v for k, v in defaults.items() if k not in kept.settings}, **kept.settings}
        if theirs != mine:
            what = ", ".join(f"{k} {theirs.get(k)!r} (now {v!r})" for k, v in mine.items() if theirs.get(k) != v)
            raise WeightsUnavailable(f"trained with other settings: {what}")
        if kept.data_fingerprint != self.prepared.corpus.fingerprint:
            raise WeightsUnavailable("trained on other data files")
        with tempfile.TemporaryDirectory(prefix="seqclf-weights-") as tmp:
            try:
                tuned = from_weights(self.settings, self.prepared.corpus.id2label,
                                     fetch_weights(self.store, kept, Path(tmp)),
                                     self.prepared.encoded(self.settings.max_seq_length).dev, self.prepared.tokenizer,
                                     self.machine, kept.train_metrics, kept.log_history,
                                     trial.user_attrs.get(HISTORY_ATTR, []))
            except ModelLoadError as exc:
                raise WeightsUnavailable(str(exc)) from None
        return tuned, {"trained_on": kept.trained_on, "from_trial": {
            "study": self.study_name, "trial": trial.number, "artifact_id": kept.artifact_id, "sha256": kept.sha256}}

    def train(self, seed: int, final: Path, on_step: StepHook,
              taken: tuple[FineTuneResult, dict[str, Any], int] | None = None,
              progress: Progress = silent) -> ReplicaResult:
        """Train (or take ``taken``: a trial's kept weights, where they came from, the trial), evaluate and write
        one replica into a temporary folder, then rename it to ``final``."""
        remove_stale_temp(final)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        s, hp = self.settings, self.hp
        run = self.tracker.start(f"{self.study_name}/replica-seed{seed}", {
            "study": self.study_name, "model": s.model, "batch_size": hp.batch_size,
            "learning_rate": hp.learning_rate, "seed": seed, "epochs": s.epochs, "replica": True,
        }, {"role": "replica", "key": replica_key(final), "seed": str(seed), "output_dir": str(final.parent.resolve()),
            **({"from_trial": str(taken[2])} if taken is not None else {})})
        state = "INTERRUPTED"
        try:
            tmp.mkdir(parents=True)  # the replica in progress; renamed into place when complete
            tuned, test, origin = self._fit(seed, on_step, run, taken, progress)
            for split, metrics in (("eval", tuned.dev.metrics), ("test", test.metrics)):
                for name, value in metrics.items():
                    run.track(name, value, step=int(tuned.train_metrics.get("epoch", 0)), subset=split)
            failed = self.prepared.failed_run(tuned.dev)
            run.note("failed_run", failed or "")
            write_replica(tmp, tuned, test, self.prepared, hp, s, seed, self.task_name, failed, origin)
            os.replace(tmp, final)
            for file in results_files(final):
                run.attach(file)
            state = "COMPLETE"
        except OSError as exc:
            state = "FAIL"
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"{final}: replica could not be written ({exc.strerror or exc}); "
                              "nothing was kept for this seed") from None
        except Exception:
            state = "FAIL"
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            run.close(state)
        self.probabilities[seed] = (tuned.dev.probabilities, test.probabilities)
        scores = {**{f"dev_{k}": v for k, v in tuned.dev.metrics.items()},
                  **{f"test_{k}": v for k, v in test.metrics.items()}}
        return ReplicaResult(seed, str(final), scores, failed_run=failed,
                             from_trial=None if taken is None else taken[2])

    def _fit(self, seed: int, on_step: StepHook, run: TrackedRun,
             taken: tuple[FineTuneResult, dict[str, Any], int] | None,
             progress: Progress) -> tuple[FineTuneResult, EvalResult, dict[str, Any]]:
        """The seed's model (trained, or ``taken`` from a trial), its test evaluation and where it came from. Out
        of memory runs it again with half the micro-batch and evaluation batch (``training.memory``)."""
        s, hp, encoded = self.settings, self.hp, self.prepared.encoded(self.settings.max_seq_length)

        def fit(machine: MachineSettings) -> tuple[FineTuneResult, EvalResult]:
            tuned = taken[0] if taken is not None else self.trainer(
                s.model, self.prepared.tokenizer, encoded.train, encoded.dev, self.prepared.corpus.id2label, hp, s,
                seed, machine=machine, on_step=on_step, on_log=log_to(run))
            return tuned, evaluate(tuned.model, encoded.test, self.prepared.tokenizer, machine.eval_batch_size,
                                   machine.precision)

        (tuned, test), used = fit_in_memory(fit, self.machine, hp.batch_size, progress)
        return tuned, test, taken[1] if taken is not None else {"trained_on": trained_on(used), "from_trial": None}

    def _read_replica(self, path: Path, seed: int) -> ReplicaResult:
        """A complete replica's scores; (single-label) replicas written before failed runs were marked are judged
        by their dev F1 against the majority baseline."""
        results = read_results(path)
        failed = results.get("failed_run")
        if "failed_run" not in results and "eval_f1" in results:
            labels = np.asarray(self.prepared.encoded(self.settings.max_seq_length).dev["labels"])
            failed = below_baseline_reason(labels, float(results["eval_f1"]))
        return ReplicaResult.of_results(seed, str(path), results, reused=True, failed_run=failed,
                                        from_trial=results.get("from_trial"))
