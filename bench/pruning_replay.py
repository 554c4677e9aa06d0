"""P5 by replay: run the pruners over the learning curves of an exhaustive study, for many grid orders.

Every trial of a study trains with the same seed, so a point's dev F1 after each epoch is the same whether
or not a pruner stops it later (tests/e2e/test_cli_workers.py checks runs agree to the last digit). Given the curves
of one exhaustive ``tune --pruner none`` study, a pruned study is therefore replayed exactly by an Optuna
study with the same grid order (the same queue) and pruner whose objective reports the recorded F1 after each epoch and
stops when ``should_prune()`` says so, as ``Objective`` does. That costs milliseconds instead of hours, so
each pruner is run under many orders, not the one a real run gets. ``tune`` trains a new study's grid
from the typical fine-tuning settings outwards (``promising-first``; only ties between equally typical
points depend on the seed): the replay gives the budget and best F1 for the seed and study name
``bench/pruning.py`` gives ``tune``, then over ``--orders`` seeds and study names (the name places trials in
hyperband's brackets), then over ``--orders`` shuffled orders (Optuna's GridSampler alone; what studies
made before the promising-first order used).

Checked against real runs: replayed under the seed and study names of ``bench/pruning.py``'s studies, it
gives the step counts those real pruned studies measured (bench/RESULTS.md).

    python bench/pruning_replay.py STORAGE_URL STUDY [--orders 200] [--pruners median,halving,hyperband]
        [--alternatives]
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings
from collections.abc import Callable

import _common
import optuna

import optuna_seqclf.study.queue as grid_lib
from optuna_seqclf.settings import SearchSpace
from optuna_seqclf.study.queue import GRID_ORDER, enqueue_untaken, grid_order
from optuna_seqclf.study.record import StudyRecord, make_pruner

Curves = dict[tuple[int, float], list[float]]


def curves_of(study: optuna.Study) -> Curves:
    out: Curves = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        values = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        out[(int(t.params["batch_size"]), float(t.params["learning_rate"]))] = values
    return out


def replay(curves: Curves, space: SearchSpace, seed: int, pruner: optuna.pruners.BasePruner, study_name: str,
           order: str = "promising-first") -> list[tuple[int, float, int, str]]:
    """(batch size, learning rate, epochs trained, state) per trial, in the order the study ran them.

    The study name matters to ``hyperband``: it picks each trial's bracket from a hash of name and number."""
    study = optuna.create_study(study_name=study_name, direction="maximize", pruner=pruner)
    enqueue_untaken(study, grid_order(space, seed, order))  # the queue `tune` makes
    ran: list[tuple[int, float, int, str]] = []

    def objective(trial: optuna.Trial) -> float:
        bs = int(trial.suggest_categorical("batch_size", list(space.batch_sizes)))
        lr = float(trial.suggest_categorical("learning_rate", list(space.learning_rates)))
        for epoch, f1 in enumerate(curves[(bs, lr)], start=1):
            trial.report(f1, epoch)
            if trial.should_prune():
                ran.append((bs, lr, epoch, "PRUNED"))
                raise optuna.TrialPruned()
        ran.append((bs, lr, len(curves[(bs, lr)]), "COMPLETE"))
        return curves[(bs, lr)][-1]

    study.optimize(objective, n_trials=len(curves))
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage")
    parser.add_argument("study")
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--pruners", default="median,halving,hyperband")
    parser.add_argument("--alternatives", action="store_true", help="also replay other settings of the pruners")
    parser.add_argument("--centres", default="", help="also tune's order centred on these learning rates "
                        "instead of 3e-5 (how much the result hangs on the prior)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)

    exhaustive = optuna.load_study(study_name=args.study, storage=args.storage)
    record = StudyRecord.from_study(exhaustive)
    epochs, seed = record.settings.epochs, record.settings.seed
    space = record.space
    curves = curves_of(exhaustive)
    if len(curves) != len(space):
        raise SystemExit(f"{args.study}: {len(curves)} complete points; the replay needs the whole grid")
    with open(f"{record.data.data_dir}/train.txt", encoding="utf-8") as fh:
        n_train = sum(1 for _ in fh) - 1  # the header
    steps_per_epoch = {bs: math.ceil(n_train / bs) for bs in space.batch_sizes}
    full_steps = sum(len(v) * steps_per_epoch[bs] for (bs, _), v in curves.items())
    best = max(v[-1] for v in curves.values())
    lines = [f"Curves of study {args.study!r}: {len(curves)} points, {epochs:g} epochs, best dev F1 "
             f"{best:.4f}, {full_steps} training steps exhaustive; replayed in tune's order (seed {seed}), "
             f"then {args.orders} seeds (1000...) of the promising-first order and of the shuffled one"]
    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        name: (lambda name=name: make_pruner(name, epochs, len(curves))) for name in args.pruners.split(",")}
    if args.alternatives:  # other settings of the same pruners, to see what the defaults trade
        epochs, p = math.ceil(record.settings.epochs), optuna.pruners
        pruners.update({
            f"median, {k} startup trial(s)": (lambda k=k: p.MedianPruner(n_startup_trials=k)) for k in (1, 3, 5)})
        pruners["halving, reduction factor 4"] = lambda: p.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4)
        for rf in (2, 4):
            pruners[f"hyperband, reduction factor {rf}"] = (
                lambda rf=rf: p.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=rf))

    for name, build in pruners.items():
        own = f"prune-{name.split(',')[0]}"  # the name bench/pruning.py gives its real study
        label = name if " " in name else f"`--pruner {name}`"
        share, gap = _run(curves, space, steps_per_epoch, full_steps, best, seed, build, own, GRID_ORDER)
        parts = [f"- {label}: tune's order **{100 * share:.1f}%** of the steps, best {gap:.2f} points below"]
        for centre in [float(c) for c in args.centres.split(",") if c]:
            typical, grid_lib.TYPICAL_LEARNING_RATE = grid_lib.TYPICAL_LEARNING_RATE, centre
            try:
                share, gap = _run(curves, space, steps_per_epoch, full_steps, best, record.settings.seed, build, own,
                                  GRID_ORDER)
            finally:
                grid_lib.TYPICAL_LEARNING_RATE = typical
            parts.append(f"centred on {centre:g}: {100 * share:.1f}%, {gap:.2f} below")
        for order in (GRID_ORDER, "shuffled"):
            runs = [_run(curves, space, steps_per_epoch, full_steps, best, seed, build, f"replay-{seed}", order)
                    for seed in range(1000, 1000 + args.orders)]
            shares, gaps = sorted(s for s, _ in runs), [g for _, g in runs]
            met = sum(s <= 0.40 and g <= 0.5 for s, g in runs)
            parts.append(
                f"{order} over {args.orders} seeds: median {100 * statistics.median(shares):.1f}%, 10-90% "
                f"{100 * shares[len(shares) // 10]:.1f}-{100 * shares[9 * len(shares) // 10]:.1f}%, best within 0.5 "
                f"points in {sum(g <= 0.5 for g in gaps)}, within 1 point in {sum(g <= 1.0 for g in gaps)}, "
                f"**P5 met in {met}/{args.orders}**")
        lines.append("; ".join(parts))
    _common.record("P5 pruning by replay of an exhaustive study's learning curves", lines)


def _run(curves: Curves, space: SearchSpace, steps_per_epoch: dict[int, int], full_steps: int, best: float,
         seed: int, build: Callable[[], optuna.pruners.BasePruner], study_name: str, order: str,
         ) -> tuple[float, float]:
    """(share of the exhaustive grid's steps, points below its best F1) of one replayed pruned study."""
    ran = replay(curves, space, seed, build(), study_name, order)
    steps = sum(epochs * steps_per_epoch[bs] for bs, _, epochs, _ in ran)
    found = max(curves[(bs, lr)][-1] for bs, lr, _, state in ran if state == "COMPLETE")
    return steps / full_steps, 100 * (best - found)


if __name__ == "__main__":
    main()
