"""Which default job? Replays of exhaustive, pruned and confirmed tuning over cached runs (issue 24).

Phase 1 (expensive, resumable across sessions): train every point of a grid with every seed, 4 epochs, on
one corpus, keeping the dev macro-F1 after each epoch, the final test macro-F1 and the steps of an epoch,
into a JSON cache (``--cache``; rerun to go on where it stopped; one process per corpus can share it).
The grid is a sub-grid of the default one (batch sizes 16, 32 x five of the reference's learning rates,
1e-5 to 1e-3): points around the usual settings and far from them, as the default grid has.

Phase 2 (cheap): replay whole jobs (tune, its confirmation stage, then ``train``'s 5 replicas) as if each
seed in turn had been the study's seed, with the real pruners (``study.record.make_pruner``) on the recorded
curves in the order ``tune`` trains a new study (``study.queue.grid_order``), and the real confirmation
rule (the top K complete points, not failed runs, each trained with N more seeds; the best mean dev F1).
A replica whose (point, seed) the job trained to the end already is reused, not counted again. For each
job: the chosen point's mean test F1 over all seeds, its regret against the best mean-test point, the
worst case over replays, and the training steps of the whole job against today's default (exhaustive
single-seed grid, then 5 fresh replicas).

    python bench/default_job.py --corpus sst2-2k --collect-only      # phase 1, one corpus per process
    python bench/default_job.py                                       # phase 2 over both corpora's caches
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT, SHARED_DATA, minilm, record

sys.path.insert(0, str(ROOT))

# tweet-emotion's train split is sliced to its first 1,600 lines (the classes keep their shares: anger 43%,
# sadness 26%, joy 21%, optimism 10%; dev and test whole): 3,257 lines cost 340 s a run on one core, and
# 50 runs of that did not fit beside the end-to-end bench in one session.
CORPORA = ("sst2-2k", "tweet-emotion-1.6k")
SLICES = {"tweet-emotion-1.6k": ("tweet-emotion", 1600)}
BATCH_SIZES = (16, 32)
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
SEEDS = (1, 2, 3, 4, 5)
EPOCHS = 4
REPLICAS = 5


def data_spec(corpus: str):  # -> DataSpec, imported late (torch) so that --help is quick
    from optuna_seqclf import DataSpec

    folder = SHARED_DATA / corpus
    if corpus in SLICES:
        source, lines = SLICES[corpus]
        folder = ROOT / "bench" / ".cache" / corpus
        folder.mkdir(parents=True, exist_ok=True)
        for split in sorted((SHARED_DATA / source).glob("*.jsonl")):
            text = split.read_text(encoding="utf-8").splitlines(keepends=True)
            tmp = folder / f"{split.name}.{os.getpid()}.tmp"  # atomic: shards may write it at once
            tmp.write_text("".join(text[:lines] if split.stem == "train" else text), encoding="utf-8")
            os.replace(tmp, folder / split.name)
    if next(folder.glob("*.jsonl"), None) is not None:  # tweet-emotion: {"text": ..., "label": ...}
        return DataSpec(folder, text_column="text", label_column="label")
    return DataSpec(folder)


def cache_path(cache_dir: Path, corpus: str, shard: str = "") -> Path:
    return cache_dir / f"default_job_{corpus}{'-' + shard if shard else ''}.json"


def cached_rows(cache_dir: Path, corpus: str) -> list[dict]:
    """Every run of ``corpus`` in its cache and its shards' caches (each (point, seed) once)."""
    rows: dict[tuple, dict] = {}
    for path in sorted(cache_dir.glob(f"default_job_{corpus}*.json")):
        for r in json.loads(path.read_text()):
            rows.setdefault((r["batch_size"], r["learning_rate"], r["seed"]), r)
    return list(rows.values())


def collect(corpus: str, cache_dir: Path, seeds: tuple[int, ...] = SEEDS, shard: str = "") -> None:
    """Train the (point, seed) runs no cache of the corpus has, seed by seed in the order given, into this
    shard's cache (rewritten after each run): several processes can share a corpus, each with its own
    shard and seeds."""
    cache = cache_path(cache_dir, corpus, shard)
    from optuna_seqclf.runtime import configure_process
    from optuna_seqclf.settings import HParams, MachineSettings, TrainSettings
    from optuna_seqclf.training.loop import evaluate, fine_tune
    from optuna_seqclf.training.prepared import prepare

    configure_process(threads=int(os.environ.get("BENCH_THREADS", "0")) or None)
    rows = json.loads(cache.read_text()) if cache.exists() else []
    settings = TrainSettings(model=minilm(), epochs=EPOCHS, max_seq_length=128)  # the default recipe
    machine = MachineSettings(device="cpu")
    prepared = prepare(data_spec(corpus), settings, machine)
    encoded = prepared.encoded(settings.max_seq_length)
    for seed, bs, lr in itertools.product(seeds, BATCH_SIZES, LEARNING_RATES):
        if (bs, lr, seed) in {(r["batch_size"], r["learning_rate"], r["seed"]) for r in cached_rows(cache_dir, corpus)}:
            continue  # trained by this or another shard
        started = time.perf_counter()
        curve: list[float] = []
        result = fine_tune(settings.model, prepared.tokenizer, encoded.train, encoded.dev,
                           prepared.corpus.id2label, HParams(bs, lr), settings, seed, machine=machine,
                           on_epoch=lambda _epoch, metrics, curve=curve: curve.append(metrics["f1"]))
        test = evaluate(result.model, encoded.test, prepared.tokenizer, machine.eval_batch_size)
        rows.append({"corpus": corpus, "batch_size": bs, "learning_rate": lr, "seed": seed, "dev_curve": curve,
                     "test_f1": test.metrics["f1"], "steps": result.train_metrics["global_step"],
                     "batching": settings.batching, "seconds": round(time.perf_counter() - started, 1)})
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, cache)
        print(f"{corpus} seed {seed} bs {bs} lr {lr:g}: dev {[round(f, 4) for f in curve]} test "
              f"{test.metrics['f1']:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)


# --- phase 2: replays ------------------------------------------------------------------------------------

Point = tuple[int, float]


@dataclass(frozen=True)
class Runs:
    """One corpus's cache: (point, seed) -> its dev curve, final test F1 and steps."""

    curves: dict[tuple[Point, int], list[float]]
    test: dict[tuple[Point, int], float]
    steps: dict[tuple[Point, int], int]
    points: list[Point]
    seeds: list[int]

    @classmethod
    def load(cls, rows: list[dict]) -> Runs:
        key = lambda r: ((int(r["batch_size"]), float(r["learning_rate"])), int(r["seed"]))  # noqa: E731
        points = [(bs, lr) for bs in BATCH_SIZES for lr in LEARNING_RATES]  # the bench's grid, whatever is cached
        seeds = list(SEEDS)
        return cls({key(r): r["dev_curve"] for r in rows}, {key(r): r["test_f1"] for r in rows},
                   {key(r): int(r["steps"]) for r in rows}, points, seeds)

    def complete(self) -> bool:
        return all((p, s) in self.curves for p in self.points for s in self.seeds)

    def epoch_steps(self, point: Point, seed: int) -> int:
        return self.steps[(point, seed)] // len(self.curves[(point, seed)])

    def mean_test(self, point: Point) -> float:
        return statistics.fmean(self.test[(point, s)] for s in self.seeds)


@dataclass(frozen=True)
class Job:
    pruner: str  # none, median, halving
    top: int  # confirmation: the top K points ...
    more: int  # ... with N more seeds

    @property
    def name(self) -> str:
        parts = [f"--pruner {self.pruner}", f"--confirm-top {self.top}"]
        if self.top:
            parts.append(f"--confirm-seeds {self.more}")
        return " ".join(parts)


def tune_replay(runs: Runs, job: Job, seed: int) -> tuple[dict[Point, tuple[int, bool]], float]:
    """The grid of a study whose seed is ``seed``: point -> (epochs trained, complete), and its steps."""
    import optuna

    from optuna_seqclf.settings import SearchSpace
    from optuna_seqclf.study.queue import GRID_ORDER, enqueue_untaken, grid_order
    from optuna_seqclf.study.record import make_pruner

    space = SearchSpace(tuple(sorted({p[0] for p in runs.points})), tuple(sorted({p[1] for p in runs.points})))
    study = optuna.create_study(direction="maximize", pruner=make_pruner(job.pruner, EPOCHS, len(space)))
    enqueue_untaken(study, grid_order(space, seed, GRID_ORDER))
    trained: dict[Point, tuple[int, bool]] = {}

    def objective(trial: optuna.Trial) -> float:
        point = (int(trial.suggest_categorical("batch_size", list(space.batch_sizes))),
                 float(trial.suggest_categorical("learning_rate", list(space.learning_rates))))
        curve = runs.curves[(point, seed)]
        for epoch, f1 in enumerate(curve, start=1):
            trial.report(f1, epoch)
            if epoch < len(curve) and trial.should_prune():
                trained[point] = (epoch, False)
                raise optuna.TrialPruned()
        trained[point] = (len(curve), True)
        return curve[-1]

    study.optimize(objective, n_trials=len(space))
    steps = sum(epochs * runs.epoch_steps(p, seed) for p, (epochs, _) in trained.items())
    return trained, steps


def job_replay(runs: Runs, job: Job, seed: int, more_seeds: tuple[int, ...], reuse: bool = True
               ) -> tuple[Point, int, int]:
    """(chosen point, steps of tune, steps of confirmation + replicas) of one job; with ``reuse``, a replica
    whose (point, seed) the job trained to the end is not trained again."""
    grid, tune_steps = tune_replay(runs, job, seed)
    final = {p: runs.curves[(p, seed)][-1] for p, (_, complete) in grid.items() if complete}
    ranked = sorted(final, key=lambda p: (-final[p], p))
    trained = {(p, seed) for p in final} if reuse else set()  # runs trained to the end: replicas reuse them
    chosen = ranked[0]
    steps = 0
    confirmed = ranked[:job.top] if job.top and len(ranked) >= 2 else []
    if confirmed and more_seeds:
        means = {p: statistics.fmean(runs.curves[(p, s)][-1] for s in (seed, *more_seeds)) for p in confirmed}
        chosen = min(means, key=lambda p: (-means[p], ranked.index(p)))
        for p, s in itertools.product(confirmed, more_seeds):
            steps += runs.steps[(p, s)]
            if reuse:
                trained.add((p, s))
    replica_seeds = [seed, *[s for s in runs.seeds if s != seed]][:REPLICAS]  # tune's seed first, as `train`
    steps += sum(runs.steps[(chosen, s)] for s in replica_seeds if (chosen, s) not in trained)
    return chosen, tune_steps, steps


def default_grid_steps(runs: Runs, seed: int) -> int:
    """The steps of the 36-point default grid trained exhaustively (12 learning rates at batch 8, 16, 32),
    from this corpus's steps per epoch (batch 8's: twice batch 16's)."""
    from optuna_seqclf.settings import DEFAULT_BATCH_SIZES, DEFAULT_LEARNING_RATES

    per_epoch = {bs: runs.epoch_steps((bs, LEARNING_RATES[0]), seed) for bs in BATCH_SIZES}
    per_epoch.setdefault(8, 2 * per_epoch[16])
    return sum(EPOCHS * per_epoch[bs] for bs in DEFAULT_BATCH_SIZES) * len(DEFAULT_LEARNING_RATES)


# job -> (chosen point's mean test F1, worst regret, steps vs today, projected to the 36-point grid)
Stats = dict[Job, tuple[float, float, float, float]]


def replay(runs: Runs, jobs: list[Job]) -> tuple[list[str], Stats]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    best_test = max(runs.mean_test(p) for p in runs.points)
    today = Job("none", 0, 0)  # exhaustive single-seed grid, then 5 replicas trained afresh
    todays = {s: job_replay(runs, today, s, (), reuse=False) for s in runs.seeds}
    base = statistics.fmean(tune + rest for _, tune, rest in todays.values())
    # The projection keeps each replay's share of the grid's steps pruning trained, and its confirmation and
    # replica steps, and puts them against the 36-point grid: there replicas are a smaller share of the job.
    base36 = statistics.fmean(default_grid_steps(runs, s) + rest for s, (_, _, rest) in todays.items())
    lines = [f"Today's default job (exhaustive, single seed, 5 fresh replicas): {base:,.0f} training steps on average "
             f"on this grid, {base36:,.0f} projected on the 36-point default grid; each job below reuses the "
             "study's runs as replicas. Projected: the share of the grid's steps the job's pruning trained here, "
             "and its confirmation and replica steps, against the 36-point grid's steps.", "",
             "| job | chosen point's mean test F1 | mean regret (points) | worst regret | steps vs today "
             "| projected, 36-point grid |", "|---|---|---|---|---|---|"]
    stats: Stats = {}
    for job in jobs:
        tests, steps, steps36 = [], [], []
        for seed in runs.seeds:
            others = [s for s in runs.seeds if s != seed]
            for more in itertools.combinations(others, job.more) if job.top else [()]:
                chosen, tune, rest = job_replay(runs, job, seed, more)
                tests.append(runs.mean_test(chosen))
                steps.append(tune + rest)
                steps36.append(tune / todays[seed][1] * default_grid_steps(runs, seed) + rest)
        regrets = [100 * (best_test - t) for t in tests]
        ratio, ratio36 = statistics.fmean(steps) / base, statistics.fmean(steps36) / base36
        lines.append(f"| `{job.name}` | {statistics.fmean(tests):.4f} | {statistics.fmean(regrets):.2f} | "
                     f"{max(regrets):.2f} | {ratio:.2f} | {ratio36:.2f} |")
        stats[job] = (statistics.fmean(tests), max(regrets), ratio, ratio36)
    return lines, stats


def verdict(per_corpus: dict[str, Stats]) -> list[str]:
    """The jobs that meet the issue's rule on every corpus: at most half today's steps (on this grid, then
    projected on the 36-point one), a chosen point whose mean test F1 is at least the single-seed choice's,
    and a lower worst case; and the jobs that meet its two quality conditions alone."""
    today = Job("none", 0, 0)
    jobs = list(next(iter(per_corpus.values())))
    better = [job for job in jobs if job != today and all(
        s[job][0] >= s[today][0] and s[job][1] < s[today][1] for s in per_corpus.values())]
    lines = []
    for where, column in (("on this grid", 2), ("projected on the 36-point grid", 3)):
        met = [job for job in better if all(s[job][column] <= 0.5 for s in per_corpus.values())]
        lines.append(f"Jobs that meet the rule on every corpus {where} (<= 0.5x today's steps, mean test F1 >= "
                     "the single-seed choice's, a lower worst case): " + (", ".join(
                         f"`{job.name}`" for job in sorted(
                             met, key=lambda j: max(s[j][column] for s in per_corpus.values()))) or "none") + ".")
    lines.append("Jobs whose chosen point is at least as good on mean test F1 with a lower worst case on every "
                 "corpus, whatever they cost: " + (", ".join(f"`{job.name}`" for job in better) or "none") + ".")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=CORPORA, help="phase 1 for this corpus only")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench")
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="phase 1: these seeds, in this order")
    parser.add_argument("--shard", default="", help="phase 1: this process's own cache file (with --seeds)")
    parser.add_argument("--jobs", default="none:0:0,median:0:0,halving:0:0,none:3:1,median:3:1,halving:3:1,"
                        "median:2:1,median:2:2,median:3:2,halving:2:2,median:5:1",
                        help="PRUNER:TOP:MORE_SEEDS per job; none:0:0 is today's default")
    args = parser.parse_args()
    corpora = [args.corpus] if args.corpus else list(CORPORA)
    if args.collect_only:
        for corpus in corpora:
            collect(corpus, args.cache_dir, tuple(int(s) for s in args.seeds.split(",")), args.shard)
        return
    jobs = [Job(p, int(t), int(m)) for p, t, m in (j.split(":") for j in args.jobs.split(","))]
    lines: list[str] = []
    per_corpus: dict[str, Stats] = {}
    for corpus in corpora:
        runs = Runs.load(cached_rows(args.cache_dir, corpus))
        if not runs.complete():
            raise SystemExit(f"{corpus}: the cache is not complete; run --collect-only --corpus {corpus}")
        table, per_corpus[corpus] = replay(runs, jobs)
        lines += [f"### {corpus}: {len(runs.points)} points x seeds {runs.seeds}, {EPOCHS} epochs, "
                  "all-MiniLM-L6-v2", "", *table, ""]
    lines += verdict(per_corpus)
    record("Issue 24: the default job by replay", lines)


if __name__ == "__main__":
    main()
