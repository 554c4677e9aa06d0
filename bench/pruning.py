"""P5 and P4 with pruning: pruned tuning against the exhaustive grid and against Trainer.hyperparameter_search.

A reduced grid, because the full 36 points x 4 epochs takes hours on 2 CPU cores: batch size 32 x all 12
learning rates of the default grid, 4 epochs (tune's default), SST-2 2k, all-MiniLM-L6-v2, dev macro-F1.
One after the other, each in a fresh process:

- ``optuna-seqclf tune --pruner none``: the exhaustive grid;
- ``optuna-seqclf tune --pruner P`` for each P of ``--pruners``;
- with ``--hf``: ``Trainer.hyperparameter_search(backend="optuna")`` with its defaults, the same GridSampler,
  metric and epochs (no pruning: by default it evaluates only after training).

A trial's training steps are the epochs it reported times its steps per epoch. ``--exhaustive URL`` takes
the exhaustive grid from an earlier ``tune --pruner none`` study of the same grid instead of training it
again (its wall time is then the span of its trials' times).

    python bench/pruning.py [--batch-sizes 32] [--learning-rates ...] [--epochs 4] [--pruners median,halving] [--hf]
        [--exhaustive sqlite:///path/studies/NAME.db]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import _common
from hf_search import run_hf_search

DEFAULT_RATES = "1e-3,1e-4,1e-5,1e-6,3e-3,3e-4,3e-5,3e-6,5e-3,5e-4,5e-5,5e-6"


@dataclass(frozen=True)
class Outcome:
    wall: float
    steps: int
    best: float
    best_params: dict
    complete: int
    pruned: int


def _tune(tmp: str, model: str, args: argparse.Namespace, pruner: str, n_train: int) -> Outcome:
    import optuna

    name = f"prune-{pruner}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optuna_seqclf", "tune", str(_common.SST2_2K), "--model", model,
                    "--study-name", name, "--batch-sizes", args.batch_sizes, "--learning-rates", args.learning_rates,
                    "--epochs", args.epochs, "--pruner", pruner, "--quiet"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return _outcome(optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/studies/{name}.db"), wall, n_train)


def _recorded(url: str, n_train: int) -> Outcome:
    """The outcome of an earlier study at ``url`` (its only study); wall time = first start to last end."""
    import optuna

    name = optuna.get_all_study_names(storage=url)[0]
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return _outcome(study, wall, n_train)


def _outcome(study, wall: float, n_train: int) -> Outcome:  # type: ignore[no-untyped-def]
    trials = study.get_trials(deepcopy=False)
    steps = sum(len(t.intermediate_values) * math.ceil(n_train / t.params["batch_size"]) for t in trials)
    states = [t.state.name for t in trials]
    return Outcome(wall, steps, study.best_value, study.best_params, states.count("COMPLETE"), states.count("PRUNED"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="32")
    parser.add_argument("--learning-rates", default=DEFAULT_RATES)
    parser.add_argument("--epochs", default="4")
    parser.add_argument("--pruners", default="median,halving")
    parser.add_argument("--hf", action="store_true", help="also time Trainer.hyperparameter_search (P4)")
    parser.add_argument("--exhaustive", default=None, help="storage URL of an earlier exhaustive study of this grid")
    args = parser.parse_args()

    model = _common.minilm()
    n_train = sum(1 for _ in (_common.SST2_2K / "train.txt").open(encoding="utf-8")) - 1
    points = len(args.batch_sizes.split(",")) * len(args.learning_rates.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        hf_line, hf_wall = None, None
        if args.hf:
            hf_wall, objective, params, *_ = run_hf_search(model, f"{tmp}/hf", args.batch_sizes,
                                                          args.learning_rates, args.epochs)
            hf_line = (f"- Trainer.hyperparameter_search (defaults, no pruning): {hf_wall:.1f} s "
                       f"(best {objective:.4f} {params})")
        full = _recorded(args.exhaustive, n_train) if args.exhaustive else _tune(tmp, model, args, "none", n_train)
        pruned = {p: _tune(tmp, model, args, p, n_train) for p in args.pruners.split(",")}

    lines = [f"SST-2 2k, all-MiniLM-L6-v2, reduced grid: batch size {args.batch_sizes} x {args.learning_rates} "
             f"({points} points), {args.epochs} epochs, dev macro-F1 reported after every epoch; fresh processes",
             f"- exhaustive (`--pruner none`{', an earlier run: ' + args.exhaustive if args.exhaustive else ''}): "
             f"{full.wall:.1f} s, {full.steps} training steps, best dev F1 "
             f"{full.best:.4f} {full.best_params}"]
    for name, out in pruned.items():
        gap = 100 * (full.best - out.best)
        share = out.steps / full.steps
        met = "met" if gap <= 0.5 and share <= 0.40 else "NOT met"
        lines.append(f"- `--pruner {name}`: {out.wall:.1f} s, {out.steps} steps = **{100 * share:.1f}% of the "
                     f"exhaustive grid's**, best dev F1 {out.best:.4f} {out.best_params} = **{gap:+.2f} points "
                     f"below** ({out.complete} complete, {out.pruned} pruned); P5 (<= 0.5 points, <= 40%): {met}; "
                     f"wall {full.wall / out.wall:.2f}x faster than exhaustive")
    if hf_line is not None and hf_wall is not None:
        lines.append(hf_line)
        lines.append(f"- speed-up over Trainer.hyperparameter_search: exhaustive {hf_wall / full.wall:.2f}x; "
                     + ", ".join(f"`--pruner {n}` **{hf_wall / o.wall:.2f}x**" for n, o in pruned.items())
                     + " (P4 target with pruning >= 4x)")
    _common.record("P5 pruning budget (and P4 with pruning)", lines)


if __name__ == "__main__":
    main()
