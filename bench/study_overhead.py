"""P2: a whole `tune` command against the sum of its trials' train + eval time.

Everything that is not training or evaluating (Python start-up and imports, reading and tokenising the
data, loading the model for each trial, storage writes, tracking) is overhead; the target is <= 5%.
Runs the real CLI in a fresh process and takes the trials' own timings from the study.

    python bench/study_overhead.py [--batch-sizes 16,32] [--learning-rates 5e-5,1e-4] [--epochs 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--learning-rates", default="5e-5,1e-4")
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--no-track", action="store_true")
    args = parser.parse_args()

    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "optuna_seqclf", "tune", str(_common.SST2_2K), "--model", _common.minilm(),
               "--study-name", "overhead", "--batch-sizes", args.batch_sizes, "--learning-rates",
               args.learning_rates, "--epochs", args.epochs, "--quiet", *(["--no-track"] if args.no_track else [])]
        started = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        study = optuna.load_study(study_name="overhead", storage=f"sqlite:///{Path(tmp) / 'studies' / 'overhead.db'}")
        trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    train = sum(t.user_attrs["train_runtime"] for t in trials)
    evals = sum(t.user_attrs["eval_runtime"] for t in trials)
    in_trials = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    _common.record("P2 whole-study wall time vs its trials' train + eval time", [
        f"SST-2 2k, all-MiniLM-L6-v2, grid {args.batch_sizes} x {args.learning_rates} ({len(trials)} trials), "
        f"{args.epochs} epoch(s), Aim tracking {'off' if args.no_track else 'on'}; the CLI in a fresh process",
        f"- wall time of the command: {wall:.1f} s",
        f"- trials' training {train:.1f} s + dev evaluation {evals:.1f} s = {train + evals:.1f} s "
        f"(inside trials, all in: {in_trials:.1f} s)",
        f"- outside trials (start-up, imports, reading, tokenising, storage): {wall - in_trials:.1f} s; "
        f"inside trials but not train/eval (model load, tracking): {in_trials - train - evals:.1f} s",
        f"- **ratio wall / (train + eval): {wall / (train + evals):.3f}** (target <= 1.05)",
    ])


if __name__ == "__main__":
    main()
