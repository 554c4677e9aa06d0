"""Train the final models: the study's best (batch size, learning rate), one replica per seed.

Each replica is built in a hidden temporary folder and renamed into place only when every file is
written, so a replica folder that exists is complete, and a rerun trains only the missing seeds.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .config import DEFAULT_SEEDS, HParams, MachineSettings, TrainSettings
from .errors import OutputError, StudyError
from .grid import REPLICAS_ATTR
from .hooks import Progress, StepHook, silent
from .inputs import Prepared, prepare
from .interrupts import InterruptGate, gated_interrupts
from .optim import MAX_GRAD_NORM
from .storage import open_storage
from .study import StudyRecord, best_trial, load_study
from .summary import Summary
from .tracking import Tracker, check_log_dir, log_to, make_tracker
from .train import EvalResult, FineTuneResult, evaluate, fine_tune

COMPLETE_MARKER = "all_results.json"
SUMMARY_FILE = "replicas_summary.json"


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
    summary = Summary.of([asdict(r) for r in results])
    payload = {
        "study_name": study_name, "storage": storage_url, "best_trial": best.number, "best_dev_f1": best.value,
        "params": asdict(hp), "seeds": list(seeds), "replicas": [asdict(r) for r in results], **summary.to_json(),
    }
    _write_json_atomic(output_dir / SUMMARY_FILE, payload)
    study.set_user_attr(REPLICAS_ATTR, {**payload, "output_dir": str(output_dir.resolve())})  # for `report`
    return ReplicasResult(study_name, hp, best.value, output_dir, results, summary)


def _gated(gate: InterruptGate, on_step: StepHook | None) -> StepHook:
    """A step hook where Ctrl-C stops between two steps (the unfinished replica is removed), then ``on_step``."""

    def after_step(done: int, total: int) -> None:
        gate.check()
        if on_step is not None:
            on_step(done, total)

    return after_step


def _remove_stale_temp(final: Path) -> None:
    """Remove the temporary folders of ``final`` left by a killed ``train`` (their process is gone)."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's live process
        return True
    return True


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

    def train(self, seed: int, final: Path, on_step: StepHook) -> ReplicaResult:
        """Train, evaluate and write one replica into a temporary folder, then rename it to ``final``."""
        _remove_stale_temp(final)
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
            _write_replica(tmp, tuned, test, self.prepared, hp, s, seed, self.task_name)
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
        return ReplicaResult(seed, str(final), tuned.dev.metrics["f1"], tuned.dev.metrics["accuracy"],
                             test.metrics["f1"], test.metrics["accuracy"])


def _prefixed(prefix: str, metrics: dict[str, float], samples: int, epoch: float) -> dict[str, float]:
    out = {f"{prefix}_{k}": v for k, v in metrics.items()}
    out[f"{prefix}_samples"] = samples
    out["epoch"] = epoch
    return out


def _write_replica(tmp: Path, tuned: FineTuneResult, test: EvalResult, prepared: Prepared,
                   hp: HParams, settings: TrainSettings, seed: int, task_name: str) -> None:
    """Every file of a replica, into ``tmp``; ``all_results.json`` last, as the mark of a complete replica."""
    tuned.model.save_pretrained(tmp)  # model.safetensors, config.json with the real id2label
    prepared.tokenizer.save_pretrained(tmp)
    corpus = prepared.corpus
    epoch = float(tuned.train_metrics["epoch"])
    results = {
        "train": {**tuned.train_metrics, "train_samples": len(corpus.train)},
        "eval": _prefixed("eval", tuned.dev.metrics, len(corpus.dev), epoch),
        "test": _prefixed("test", test.metrics, len(corpus.test), epoch),
    }
    for split, metrics in results.items():
        _write_json(tmp / f"{split}_results.json", metrics)
    _write_json(tmp / "trainer_state.json", {
        "global_step": int(tuned.train_metrics["global_step"]), "epoch": epoch, "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps, "train_batch_size": hp.batch_size,
        "log_history": [*tuned.log_history, *({"eval_" + k: v for k, v in h.items()} for h in tuned.history)],
    })
    _write_json(tmp / "training_args.json", {
        "model": settings.model, "tokenizer": settings.tokenizer_name, "per_device_train_batch_size": hp.batch_size,
        "learning_rate": hp.learning_rate, "num_train_epochs": settings.epochs, "max_steps": settings.max_steps,
        "max_seq_length": settings.max_seq_length, "seed": seed, "optimizer": "AdamW (torch, fused)",
        "weight_decay": 0.0, "lr_scheduler": "linear, no warm-up", "max_grad_norm": MAX_GRAD_NORM,
    })
    names = [corpus.label_names[i] for i in test.predictions]
    (tmp / "test_predictions.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    (tmp / f"predict_results_{task_name}.txt").write_text(
        "index\tprediction\n" + "".join(f"{i}\t{n}\n" for i, n in enumerate(names)), encoding="utf-8")
    merged: dict[str, float] = {}
    for metrics in results.values():
        merged.update(metrics)
    _write_json(tmp / COMPLETE_MARKER, merged)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_replica(path: Path, seed: int) -> ReplicaResult:
    results = json.loads((path / COMPLETE_MARKER).read_text(encoding="utf-8"))
    return ReplicaResult(seed, str(path), results["eval_f1"], results["eval_accuracy"], results["test_f1"],
                         results["test_accuracy"], reused=True)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot be written ({exc.strerror})") from None
