"""P4: `optuna-seqclf tune` against `Trainer.hyperparameter_search(backend="optuna")` with its defaults.

Same model, data, grid (Optuna's GridSampler over batch size x learning rate), metric (dev macro-F1) and
epochs. The HF search runs as its documentation shows: a `model_init`, default TrainingArguments
(random-order batches, checkpoints every 500 steps, evaluation by `trainer.evaluate()` after training).
Both run in fresh processes, one after the other, in the same run of this script; with ``--reps N``
in N rounds whose order alternates (HF first, then ours first), so a drift in the machine's speed hits
both, and the medians are compared.

    python bench/hf_search.py [--batch-sizes 16,32] [--learning-rates 5e-5,1e-4] [--epochs 1] [--workers 1,2]
                              [--reps 3]

``--workers 1,2`` times our command once per value: with 2 workers on 2 cores, two trials train at
once with one torch thread each instead of one trial with two threads.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import _common

HF_SEARCH = r'''
import sys, time
import numpy as np
import optuna
from sklearn.metrics import f1_score
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
sys.path.insert(0, sys.argv[6])
from optuna_seqclf import DataSpec, TrainSettings, prepare
from optuna_seqclf.data.corpus import encode_corpus

data_dir, model_name, out, sizes, rates = sys.argv[1:6]
epochs = float(sys.argv[7])
prepared = prepare(DataSpec(data_dir), TrainSettings(model=model_name))
enc = encode_corpus(prepared.corpus, prepared.tokenizer, 128)
train, dev = enc.train.remove_columns("length"), enc.dev.remove_columns("length")
grid = {"batch_size": [int(x) for x in sizes.split(",")], "learning_rate": [float(x) for x in rates.split(",")]}

def model_init(trial=None):
    return AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=2)

def hp_space(trial):
    return {"per_device_train_batch_size": trial.suggest_categorical("batch_size", grid["batch_size"]),
            "learning_rate": trial.suggest_categorical("learning_rate", grid["learning_rate"])}

def metrics(p):
    return {"f1": f1_score(p.label_ids, np.argmax(p.predictions, -1), average="macro")}

args = TrainingArguments(output_dir=out, num_train_epochs=epochs, report_to="none", disable_tqdm=True)
trainer = Trainer(model_init=model_init, args=args, train_dataset=train, eval_dataset=dev,
                  processing_class=prepared.tokenizer, compute_metrics=metrics)
n = len(grid["batch_size"]) * len(grid["learning_rate"])
t0 = time.perf_counter()
best = trainer.hyperparameter_search(hp_space=hp_space, compute_objective=lambda m: m["eval_f1"], n_trials=n,
                                     direction="maximize", backend="optuna",
                                     sampler=optuna.samplers.GridSampler(grid, seed=1))
print("RESULT", time.perf_counter() - t0, best.objective, best.hyperparameters, flush=True)
'''


def run_hf_search(model: str, out: str, batch_sizes: str, rates: str,
                  epochs: str) -> tuple[float, float, str, float, float]:
    """Run HF_SEARCH in a fresh process: (wall s, best objective, best hyperparameters, search-only s,
    the trials' training alone in s, from the Trainer's train_runtime)."""
    started = time.perf_counter()
    hf = subprocess.run([sys.executable, "-c", HF_SEARCH, str(_common.SST2_2K), model, out, batch_sizes, rates,
                         str(_common.ROOT), epochs], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if hf.returncode != 0:
        sys.exit(hf.stderr[-3000:])
    search_s, objective, params = hf.stdout.split("RESULT", 1)[1].strip().split(" ", 2)
    train_s = sum(float(x) for x in re.findall(r"'train_runtime': '?([\d.]+)", hf.stdout + hf.stderr))
    return wall, float(objective), params, float(search_s), train_s


def _du_mb(path: str) -> float:
    out = subprocess.run(["du", "-sm", path], capture_output=True, text=True)
    return float(out.stdout.split()[0]) if out.returncode == 0 else 0.0


def run_ours(model: str, cwd: str, args: argparse.Namespace, workers: int) -> tuple[float, str, float]:
    """`optuna-seqclf tune` in a fresh process in ``cwd``: (wall s, best value and params, the trials'
    training alone in s)."""
    import optuna

    name = f"p4w{workers}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optuna_seqclf", "tune", str(_common.SST2_2K), "--model", model,
                    "--study-name", name, "--batch-sizes", args.batch_sizes, "--learning-rates",
                    args.learning_rates, "--epochs", args.epochs, "--workers", str(workers), "--quiet"],
                   cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/studies/{name}.db")
    train_s = sum(t.user_attrs.get("train_runtime", 0.0) for t in study.trials)
    return wall, f"{study.best_value:.4f} {study.best_params}", train_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--learning-rates", default="5e-5,1e-4")
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--workers", default="1", help="comma-separated: one run of ours per value")
    parser.add_argument("--reps", type=int, default=1,
                        help="rounds; the order alternates (HF first, then ours first) and medians are compared")
    args = parser.parse_args()

    model = _common.minilm()
    worker_counts = [int(w) for w in args.workers.split(",")]
    hf_walls: list[float] = []
    our_walls: dict[int, list[float]] = {w: [] for w in worker_counts}
    hf_train: list[float] = []
    our_train: dict[int, list[float]] = {w: [] for w in worker_counts}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = ["hf", *worker_counts] if rep % 2 == 0 else [*worker_counts, "hf"]
            for who in order:
                where = f"{tmp}/{rep}-{who}"
                os.makedirs(where)
                if who == "hf":
                    wall, objective, params, search_s, train_s = run_hf_search(
                        model, f"{where}/hf", args.batch_sizes, args.learning_rates, args.epochs)
                    hf_walls.append(wall)
                    hf_train.append(train_s)
                    hf_best = f"{objective:.4f} {params}; the search alone {search_s:.1f} s"
                    hf_disk = _du_mb(f"{where}/hf")
                else:
                    wall, best, train_s = run_ours(model, where, args, int(who))
                    our_walls[int(who)].append(wall)
                    our_train[int(who)].append(train_s)
                    our_best = best
                    our_disk = _du_mb(f"{where}/studies") + _du_mb(f"{where}/logs")
                label = "Trainer.hyperparameter_search" if who == "hf" else f"ours, {who} worker(s)"
                print(f"round {rep + 1}: {label} {wall:.1f} s, training {train_s:.1f} s", flush=True)
    hf_wall = statistics.median(hf_walls)
    rounds = f"{args.reps} alternating rounds, medians" if args.reps > 1 else "one round"
    lines = [
        f"SST-2 2k, all-MiniLM-L6-v2, GridSampler over {args.batch_sizes} x {args.learning_rates}, "
        f"{args.epochs} epoch(s), dev macro-F1; whole commands in fresh processes; {rounds}",
        f"- Trainer.hyperparameter_search: {', '.join(f'{w:.1f}' for w in hf_walls)} s (median {hf_wall:.1f}), "
        f"{hf_disk:.0f} MB written (best: {hf_best})",
        f"- optuna-seqclf tune: {our_disk:.0f} MB written incl. studies and Aim logs (best: {our_best})",
    ]
    for workers in worker_counts:
        wall = statistics.median(our_walls[workers])
        walls = ", ".join(f"{w:.1f}" for w in our_walls[workers])
        paired = ", ".join(f"{h / o:.2f}x" for h, o in zip(hf_walls, our_walls[workers]))
        lines += [f"- optuna-seqclf tune --workers {workers}: {walls} s (median {wall:.1f}); "
                  f"**speed-up: {hf_wall / wall:.2f}x** (target >= 2x without pruning); round by round {paired}"]
        if workers == 1:
            hf_t, our_t = statistics.median(hf_train), statistics.median(our_train[workers])
            lines += [f"- the trials' training alone (sum of train_runtime): HF {hf_t:.1f} s, ours {our_t:.1f} s "
                      f"(medians): {hf_t / our_t:.2f}x; the rest of each command (imports, loading, evaluation, "
                      f"start-up, exit) HF {hf_wall - hf_t:.1f} s, ours {wall - our_t:.1f} s"]
    _common.record("P4 optuna-seqclf tune vs Trainer.hyperparameter_search (optuna backend, defaults)", lines)


if __name__ == "__main__":
    main()
