"""The replicas folder's format, written and read here only.

A replicas folder holds ``replicas_summary.json`` (``SUMMARY_FILE``: every replica and the ensemble's
seeds), ``ensemble_results.json`` and one HF-loadable folder per seed, named as the reference names them.
Every file of a replica goes into a hidden temporary folder; ``all_results.json`` (``COMPLETE_MARKER``) is
written last, and the folder is renamed into place by ``replicas``, so a folder without the marker is
half-written. A killed ``train`` leaves only temporary folders, removed by the next one once their process
is gone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optuna_seqclf.errors import ModelLoadError, OutputError, first_line
from optuna_seqclf.settings import HParams, TrainSettings
from optuna_seqclf.training.loop import EvalResult, FineTuneResult
from optuna_seqclf.training.lora import ADAPTER_DIR, is_lora, merged_model, save_adapter
from optuna_seqclf.training.optim import MAX_GRAD_NORM
from optuna_seqclf.training.prepared import Prepared

SUMMARY_FILE = "replicas_summary.json"
COMPLETE_MARKER = "all_results.json"
ENSEMBLE_FILE = "ensemble_results.json"


def replica_dir_name(config_name: str, task_name: str, hp: HParams, epochs_label: str, seed: int) -> str:
    """``<config>-model_<task>_<bs>_<lr>_<epochs>_<seed>``, the reference's naming."""
    return f"{config_name}-model_{task_name}_{hp.batch_size}_{hp.learning_rate!r}_{epochs_label}_{seed}"


def remove_stale_temp(final: Path) -> None:
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


def _prefixed(prefix: str, metrics: dict[str, float], samples: int, epoch: float) -> dict[str, float]:
    out = {f"{prefix}_{k}": v for k, v in metrics.items()}
    out[f"{prefix}_samples"] = samples
    out["epoch"] = epoch
    return out


def write_replica(tmp: Path, tuned: FineTuneResult, test: EvalResult, prepared: Prepared,
                  hp: HParams, settings: TrainSettings, seed: int, task_name: str, failed_run: str | None,
                  origin: dict[str, Any] | None = None) -> None:
    """Every file of a replica, into ``tmp``; ``all_results.json`` last, as the mark of a complete replica
    (with ``failed_run``: why the replica is no better than the majority class, or null). ``origin``: the
    machine settings that trained it (``trained_on``) and the study's trial it was kept from (``from_trial``:
    study, trial, artifact id and sha256; null when ``train`` trained it), for training_args.json."""
    origin = origin or {}
    model = tuned.model
    if is_lora(model):  # the adapter and head beside; the replica itself merged, loadable without peft
        save_adapter(model, tmp / ADAPTER_DIR)
        model = merged_model(model)
    model.save_pretrained(tmp)  # model.safetensors, config.json with the real id2label
    prepared.tokenizer.save_pretrained(tmp)
    corpus = prepared.corpus
    epoch = float(tuned.train_metrics["epoch"])
    results: dict[str, dict[str, Any]] = {
        "train": {**tuned.train_metrics, "train_samples": len(corpus.train)},
        "eval": {**_prefixed("eval", tuned.dev.metrics, len(corpus.dev), epoch),
                 "eval_f1_per_class": tuned.dev.per_class_f1},
        "test": {**_prefixed("test", test.metrics, len(corpus.test), epoch), "test_f1_per_class": test.per_class_f1},
    }
    for split, metrics in results.items():
        write_json(tmp / f"{split}_results.json", metrics)
    write_json(tmp / "trainer_state.json", {
        "global_step": int(tuned.train_metrics["global_step"]), "epoch": epoch, "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps, "train_batch_size": hp.batch_size,
        "log_history": [*tuned.log_history, *({"eval_" + k: v for k, v in h.items()} for h in tuned.history)],
    })
    write_json(tmp / "training_args.json", {
        "model": settings.model, "tokenizer": settings.tokenizer_name, "per_device_train_batch_size": hp.batch_size,
        "learning_rate": hp.learning_rate, "num_train_epochs": settings.epochs, "max_steps": settings.max_steps,
        "max_seq_length": settings.max_seq_length, "seed": seed,
        "batching": settings.batching, "optimizer": "AdamW (torch, fused)",
        "lora": None if settings.lora is None else asdict(settings.lora),
        "weight_decay": 0.0, "lr_scheduler": "linear, no warm-up", "max_grad_norm": MAX_GRAD_NORM,
        "trained_on": origin.get("trained_on"), "from_trial": origin.get("from_trial"),
    })
    names = prediction_lines(corpus.task, test.predictions, corpus.label_names)
    (tmp / "test_predictions.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    (tmp / f"predict_results_{task_name}.txt").write_text(
        "index\tprediction\n" + "".join(f"{i}\t{n}\n" for i, n in enumerate(names)), encoding="utf-8")
    merged: dict[str, Any] = {}
    for metrics in results.values():
        merged.update(metrics)
    merged["failed_run"] = failed_run
    merged["from_trial"] = (origin.get("from_trial") or {}).get("trial")
    write_json(tmp / COMPLETE_MARKER, merged)


def results_files(folder: Path) -> list[Path]:
    """A written replica's results (scores, training log and arguments, predictions): what a tracker keeps of
    it; the weights and tokenizer stay in the folder."""
    names = {COMPLETE_MARKER, "train_results.json", "eval_results.json", "test_results.json", "trainer_state.json",
             "training_args.json", "test_predictions.txt"}
    return sorted(p for p in folder.iterdir()
                  if p.name in names or (p.name.startswith("predict_results_") and p.suffix == ".txt"))


def prediction_lines(task: str, predictions: Any, label_names: Sequence[str]) -> list[str]:
    """Each prediction as a line of text: the class name; the labels' names joined by commas (multi-label,
    empty for none); the score (regression)."""
    if task == "regression":
        return [f"{float(score):.6g}" for score in predictions]
    if task == "multi-label":
        return [",".join(name for name, on in zip(label_names, row) if on) for row in predictions]
    return [label_names[i] for i in predictions]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_results(path: Path) -> dict[str, Any]:
    """A complete replica's ``all_results.json``."""
    return json.loads((path / COMPLETE_MARKER).read_text(encoding="utf-8"))


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot be written ({exc.strerror})") from None


def replica_folders(path: Path) -> dict[int, Path]:
    """Seed -> folder of every replica a replicas folder's summary names."""
    try:
        summary = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))
        listed = {int(r["seed"]): path / Path(r["path"]).name for r in summary["replicas"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path / SUMMARY_FILE}: not a replicas summary written by `optuna-seqclf train` "
                             f"({first_line(exc)})") from None
    if not listed:
        raise ModelLoadError(f"{path / SUMMARY_FILE}: names no replica")
    return listed


def ensemble_seeds(path: Path) -> set[int] | None:
    """The seeds of the ensemble ``train`` scored (None for summaries written before it said)."""
    try:
        seeds = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))["ensemble"]["seeds"]
        return {int(s) for s in seeds}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensemble_thresholds(path: Path) -> list[float] | None:
    """The thresholds the ensemble `train` scored decides multi-label labels at (None: 0.5, or not said)."""
    try:
        thresholds = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8"))["ensemble"].get("thresholds")
        return None if thresholds is None else [float(t) for t in thresholds]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def check_complete(path: Path, replicas: dict[int, Path], ensemble: bool) -> None:
    """Refuse a replica whose folder is missing or half-written (no ``COMPLETE_MARKER``), naming its seed."""
    broken = [seed for seed, folder in replicas.items() if not (folder / COMPLETE_MARKER).is_file()]
    if broken:
        complete = seeds_text([s for s in replicas if s not in broken]) or "none"
        raise ModelLoadError(
            f"{path}: the replica of seed(s) {seeds_text(broken)} is missing or half-written; "
            "run `optuna-seqclf train` again to finish it"
            + (f", or pick a complete one with --replica SEED (complete: {complete})" if ensemble else ""))


def seeds_text(seeds: Sequence[int] | dict[int, Path]) -> str:
    return ",".join(str(s) for s in seeds)
