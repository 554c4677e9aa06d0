"""Does confirming the top of the grid over seeds choose better than the single-seed argmax? (issue 16)

Phase 1 (expensive, resumable): train every point of a grid with S seeds, recording dev and test macro-F1
and the training steps of each run, into a JSON cache (``--cache``; rerun to go on where it stopped).
Phase 2 (cheap): replay selection strategies over the cache, as if each seed in turn had been the grid's:
- single-seed argmax (today's `tune`): the grid point with the best dev F1 under that seed;
- confirmation (K, N): the top K points of that seed's grid trained again with N other seeds (every
  choice of N among the other S - 1 seeds, each counted once), the point with the best mean dev F1 over
  its 1 + N seeds (ties: lower batch size, then lower learning rate, as `tune`'s rule once the losses are
  equal);
- the oracle: the point with the best mean dev F1 over all S seeds.
For each: the chosen point's mean *test* F1 over all S seeds, the regret against the oracle's, how often
it picks the oracle's point, and the extra training steps over the grid's (and, computed from the same
K x N trials at their batch sizes, over the default 36-point grid's, the grid `tune` runs by default).

    python bench/selection.py --seeds 1,2,3,4,5 --epochs 3     # SST-2 2k, MiniLM, 10 points
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

from _common import ROOT, SST2_2K, minilm, record

sys.path.insert(0, str(ROOT))

from optuna_seqclf.runtime import configure_process
from optuna_seqclf.settings import DataSpec, HParams, MachineSettings, TrainSettings
from optuna_seqclf.training.loop import evaluate, fine_tune
from optuna_seqclf.training.prepared import prepare

Runs = dict[tuple[HParams, int], dict[str, float]]  # (point, seed) -> dev_f1, test_f1, steps


def collect(cache: Path, points: list[HParams], seeds: list[int], epochs: float) -> Runs:
    """Train the (point, seed) runs the cache lacks, seed by seed; the cache is rewritten after each run."""
    runs: Runs = {}
    if cache.exists():
        for row in json.loads(cache.read_text()):
            runs[(HParams(row["batch_size"], row["learning_rate"]), row["seed"])] = row
    settings = TrainSettings(model=minilm(), epochs=epochs, max_seq_length=128)
    machine = MachineSettings(device="cpu")
    prepared = prepare(DataSpec(SST2_2K), settings, machine)
    encoded = prepared.encoded(settings.max_seq_length)
    for seed, point in itertools.product(seeds, points):
        if (point, seed) in runs:
            continue
        started = time.perf_counter()
        result = fine_tune(settings.model, prepared.tokenizer, encoded.train, encoded.dev,
                           prepared.corpus.id2label, point, settings, seed, machine=machine)
        test = evaluate(result.model, encoded.test, prepared.tokenizer, machine.eval_batch_size)
        runs[(point, seed)] = {"batch_size": point.batch_size, "learning_rate": point.learning_rate, "seed": seed,
                               "dev_f1": result.dev.metrics["f1"], "test_f1": test.metrics["f1"],
                               "steps": result.train_metrics["global_step"]}
        cache.write_text(json.dumps(list(runs.values()), indent=1))
        print(f"seed {seed} {point}: dev {result.dev.metrics['f1']:.4f} test {test.metrics['f1']:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return runs


def _mean(runs: Runs, point: HParams, seeds: list[int], key: str) -> float:
    return statistics.fmean(runs[(point, s)][key] for s in seeds)


def _argmax(scores: dict[HParams, float]) -> HParams:
    return min(scores, key=lambda p: (-scores[p], p.batch_size, p.learning_rate))


def choose(runs: Runs, points: list[HParams], grid_seed: int, extra_seeds: tuple[int, ...], top: int
           ) -> tuple[HParams, list[HParams]]:
    """The point chosen when ``grid_seed`` trained the grid and its top ``top`` were confirmed with
    ``extra_seeds``; and the points confirmed."""
    single = {p: runs[(p, grid_seed)]["dev_f1"] for p in points}
    if top == 0 or not extra_seeds:
        return _argmax(single), []
    ranked = sorted(points, key=lambda p: (-single[p], p.batch_size, p.learning_rate))[:top]
    means = {p: _mean(runs, p, [grid_seed, *extra_seeds], "dev_f1") for p in ranked}
    return _argmax(means), ranked


def default_grid_steps(runs: Runs, seeds: list[int]) -> float:
    """Training steps of the default 36-point grid (batch sizes 8, 16, 32 x 12 learning rates) on this
    corpus, from the steps one epoch-count of each batch size takes here (steps scale with 1/batch size)."""
    per_example = statistics.fmean(r["steps"] * r["batch_size"] for r in runs.values())
    return 12 * sum(per_example / b for b in (8, 16, 32))


def replay(runs: Runs, points: list[HParams], seeds: list[int], strategies: list[tuple[int, int]]) -> list[str]:
    test = {p: _mean(runs, p, seeds, "test_f1") for p in points}
    dev = {p: _mean(runs, p, seeds, "dev_f1") for p in points}
    oracle = _argmax(dev)
    best_test = max(test.values())
    grid_steps = statistics.fmean(sum(runs[(p, s)]["steps"] for p in points) for s in seeds)
    lines = ["| point | mean dev F1 | mean test F1 |", "|---|---|---|",
             *(f"| {p.batch_size}, {p.learning_rate:g} | {dev[p]:.4f} | {test[p]:.4f} |" for p in points), "",
             f"oracle (best mean dev F1 over {len(seeds)} seeds): {oracle}, mean test F1 {test[oracle]:.4f}; the "
             f"best mean test F1 of any point: {best_test:.4f}", "",
             "| strategy | chosen point's mean test F1 | mean regret vs the oracle (test F1 points) | "
             "mean regret vs the best test point | max regret vs the oracle | picks the oracle's point | "
             "extra steps (this grid) | extra steps (default 36-point grid) |",
             "|---|---|---|---|---|---|---|---|"]
    base_regret = None
    default_steps = default_grid_steps(runs, seeds)
    for top, more in strategies:
        regrets, chosen_test, hits, extra, extra_default = [], [], 0, [], []
        for grid_seed in seeds:
            others = [s for s in seeds if s != grid_seed]
            for extra_seeds in itertools.combinations(others, more) if top else [()]:
                chosen, confirmed = choose(runs, points, grid_seed, extra_seeds, top)
                regrets.append(100 * (test[oracle] - test[chosen]))
                chosen_test.append(test[chosen])
                hits += chosen == oracle
                steps = sum(runs[(p, s)]["steps"] for p in confirmed for s in extra_seeds)
                extra.append(steps / grid_steps)
                extra_default.append(steps / default_steps)
        mean_regret = 100 * (best_test - statistics.fmean(chosen_test))  # vs the best test point: never < 0
        if top == 0:
            base_regret = mean_regret
            name = "single-seed argmax"
        else:
            name = f"confirm K={top}, N={more}"
        verdict = ""
        if top and base_regret is not None:
            halves = mean_regret <= base_regret / 2
            verdict = " (halves it)" if halves and base_regret > 0 else ""
        lines.append(f"| {name} | {statistics.fmean(chosen_test):.4f} | {statistics.fmean(regrets):.2f} | "
                     f"{mean_regret:.2f}{verdict} | {max(regrets):.2f} | {hits}/{len(regrets)} | "
                     f"{100 * statistics.fmean(extra):.0f}% | {100 * statistics.fmean(extra_default):.0f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "selection_runs.json")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--learning-rates", default="2e-5,3e-5,5e-5,1e-4,2e-4")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--strategies", default="0x0,1x1,2x1,2x2,3x1,3x2,3x4,4x2,5x2",
                        help="KxN pairs; 0x0 is the single-seed argmax")
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args()
    configure_process(threads=None, workers=1, quiet=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    points = [HParams(int(b), float(lr)) for b in args.batch_sizes.split(",") for lr in args.learning_rates.split(",")]
    runs = collect(args.cache, points, seeds, args.epochs)
    if args.collect_only:
        return
    strategies = [tuple(int(x) for x in s.split("x")) for s in args.strategies.split(",")]
    lines = [f"SST-2 2k, all-MiniLM-L6-v2, {args.epochs:g} epochs, grid {args.batch_sizes} x {args.learning_rates} "
             f"({len(points)} points) x seeds {args.seeds}; each seed in turn as the grid's seed", "",
             *replay(runs, points, seeds, strategies)]
    record("Issue 16: confirmation vs single-seed selection", lines)


if __name__ == "__main__":
    main()
