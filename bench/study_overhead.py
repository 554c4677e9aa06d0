"""P2: a whole `tune` command against the sum of its trials' train + eval time; and what tracking costs.

Everything that is not training or evaluating (Python start-up and imports, reading and tokenising the
data, loading the model for each trial, storage writes, tracking) is overhead; the target is <= 5%.
Runs the real CLI in a fresh process and takes the trials' own timings from the study.

With ``--trackers none,mlflow`` the same study runs once per tracker and rep, alternating (these machines
drift 10-15% between runs), each in a fresh folder (so MLflow's run includes creating its database), and the
result is each tracker's wall time as a ratio to the first's (issue 27's target for MLflow: within 2%).

    python bench/study_overhead.py [--batch-sizes 16,32] [--learning-rates 5e-5,1e-4] [--epochs 1]
    python bench/study_overhead.py --trackers none,mlflow --reps 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common


def one_study(args: argparse.Namespace, tracker: str) -> dict[str, float]:
    """The CLI's `tune` in a fresh folder with ``--tracker tracker``: its wall time and its trials' timings."""
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "optuna_seqclf", "tune", str(_common.SST2_2K), "--model", _common.minilm(),
               "--study-name", "overhead", "--batch-sizes", args.batch_sizes, "--learning-rates",
               args.learning_rates, "--epochs", args.epochs, "--quiet", "--tracker", tracker,
               "--pruner", "none", "--confirm-top", "0"]  # the grid alone, as P2 has always measured it
        started = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        study = optuna.load_study(study_name="overhead", storage=f"sqlite:///{Path(tmp) / 'studies' / 'overhead.db'}")
        trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return {"wall": wall, "trials": len(trials),
            "train": sum(t.user_attrs["train_runtime"] for t in trials),
            "eval": sum(t.user_attrs["eval_runtime"] for t in trials),
            "in_trials": sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--learning-rates", default="5e-5,1e-4")
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--no-track", action="store_true", help="the single run without tracking")
    parser.add_argument("--trackers", default=None, help="compare these --tracker values, e.g. none,mlflow")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    setup = (f"SST-2 2k, all-MiniLM-L6-v2, grid {args.batch_sizes} x {args.learning_rates}, {args.epochs} epoch(s); "
             "the CLI in a fresh process and folder")
    if args.trackers:
        compare(args, setup)
        return
    r = one_study(args, "none" if args.no_track else "aim")
    train, evals, wall, in_trials = r["train"], r["eval"], r["wall"], r["in_trials"]
    _common.record("P2 whole-study wall time vs its trials' train + eval time", [
        f"{setup}, {r['trials']:.0f} trials, Aim tracking {'off' if args.no_track else 'on'}",
        f"- wall time of the command: {wall:.1f} s",
        f"- trials' training {train:.1f} s + dev evaluation {evals:.1f} s = {train + evals:.1f} s "
        f"(inside trials, all in: {in_trials:.1f} s)",
        f"- outside trials (start-up, imports, reading, tokenising, storage): {wall - in_trials:.1f} s; "
        f"inside trials but not train/eval (model load, tracking): {in_trials - train - evals:.1f} s",
        f"- **ratio wall / (train + eval): {wall / (train + evals):.3f}** (target <= 1.05)",
    ])


def compare(args: argparse.Namespace, setup: str) -> None:
    trackers = args.trackers.split(",")
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in trackers}
    for _ in range(args.reps):
        for tracker in trackers:  # alternating, so a drift of the machine hits every tracker alike
            runs[tracker].append(one_study(args, tracker))
    base = statistics.mean(r["wall"] for r in runs[trackers[0]])
    lines = [f"{setup}; {args.reps} reps per tracker, alternating"]
    for tracker in trackers:
        walls = [r["wall"] for r in runs[tracker]]
        train = statistics.mean(r["train"] + r["eval"] for r in runs[tracker])
        mean = statistics.mean(walls)
        lines.append(f"- `--tracker {tracker}`: wall {', '.join(f'{w:.1f}' for w in walls)} s (mean {mean:.1f} s; "
                     f"train + eval {train:.1f} s) -> **{mean / base:.3f}x** the `--tracker {trackers[0]}` wall time")
    _common.record("P2b what tracking costs a whole study", lines)


if __name__ == "__main__":
    main()
