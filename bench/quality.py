"""Issue 23: test macro-F1 of our training loop against the HF Trainer's, same model, settings and seeds.

For each corpus, each variant trains the same (model, batch size, learning rate, epochs) with each seed and
is scored on the corpus's test split (macro-F1 of the argmax, computed the same way for every variant):

- ``trainer``: the HF Trainer with its defaults (random batches padded per batch by DataCollatorWithPadding,
  fused AdamW, linear decay without warm-up, no weight decay, clipping at 1.0), seeded with ``seed``.
- ``grouped``: our loop as it was (``fine_tune`` with ``batching="grouped"``: mega-batches of 50 sorted by
  length, the HF ``group_by_length`` recipe).
- ``random``: our loop with random batches padded per batch (``batching="random"``).
- ``grouped-shuffled``: the length-grouped batches in a random order.
- ``grouped+plain``: ``grouped`` with the suspect components swapped for plain PyTorch: unfused AdamW,
  ``clip_grad_norm_`` after the backward pass, the dense gradient norm (no folded clipping, no sparse norm).

The corpora: ``sst2-2k`` (TSV), ``tweet-emotion`` (4 imbalanced classes, JSON Lines) and ``goemotions-10``: the
GoEmotions examples with one label among its ten most frequent emotions (neutral aside), 300 / 50 / 100 per
class in train / dev / test. (All 28 single labels, 3000 examples, learnt nothing in one epoch: test macro-F1
0.03-0.05, the majority class.)
The learning rate per corpus is picked first: ``random`` with seed 1 over ``--lr-grid``, by dev macro-F1.

Every run is cached in ``--cache`` (JSON, written after each run), so the bench resumes where it stopped and
a later invocation only reports. One process, all cores; runs seed by seed over every corpus (a bench
stopped early has the same seeds everywhere), every variant of a seed one after the other.

    python bench/quality.py [--corpora sst2-2k,tweet-emotion,goemotions-10] [--seeds 1,2,3,4,5]
                            [--variants trainer,grouped,random,grouped-shuffled,grouped+plain]
                            [--epochs 1] [--batch-size 16] [--lr-grid 1e-4,2e-4,4e-4] [--report-only]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common
import numpy as np

CACHE = Path(__file__).resolve().parent / "quality_runs.json"
VARIANTS = ("trainer", "grouped", "random", "grouped-shuffled", "grouped+plain")


EMOTIONS = ("admiration", "approval", "gratitude", "amusement", "annoyance", "love", "disapproval", "curiosity",
            "anger", "optimism")  # GoEmotions' ten most frequent single labels, neutral aside


def goemotions_ten(target: Path) -> Path:
    """GoEmotions' examples with one label among ``EMOTIONS``, the first 300 / 50 / 100 of each class in the
    train / dev / test files, as TSV splits in ``target`` (built once)."""
    per_class = {"train": 300, "dev": 50, "test": 100}
    if all((target / f"{name}.txt").exists() for name in per_class):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name, cap in per_class.items():
        rows, taken = [], dict.fromkeys(EMOTIONS, 0)
        with (_common.SHARED_DATA / "goemotions" / f"{name}.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                label = record["labels"][0] if len(record["labels"]) == 1 else None
                if label in taken and taken[label] < cap:
                    taken[label] += 1
                    rows.append(f"{' '.join(record['text'].split())}\t{label}\n")
        (target / f"{name}.txt").write_text("sentence\tLabel\n" + "".join(rows), encoding="utf-8")
    return target


def corpus_spec(name: str) -> Any:
    from optuna_seqclf import DataSpec

    if name == "goemotions-10":
        return DataSpec(goemotions_ten(Path(__file__).resolve().parent / ".cache" / "goemotions-10"))
    folder = _common.SHARED_DATA / name
    if next(folder.glob("*.jsonl"), None) is not None:  # tweet-emotion: {"text": ..., "label": ...}
        return DataSpec(folder, text_column="text", label_column="label")
    return DataSpec(folder)


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="macro"))


@contextlib.contextmanager
def plain_components() -> Iterator[None]:
    """Our loop with unfused AdamW, ``clip_grad_norm_`` and the dense norm, for the duration of the block."""
    import torch

    from optuna_seqclf.training import loop

    class NoNorm:
        def __init__(self, model: Any, params: Any) -> None:
            pass

        def __call__(self, input_ids: Any) -> None:
            return None

    saved = loop.adamw, loop.clip_gradients, loop.GradientNorm
    loop.adamw = lambda params, lr, device: torch.optim.AdamW(params, lr=lr, weight_decay=0.0)  # type: ignore[assignment]
    loop.clip_gradients = lambda params, device, optimizer=None, total=None: (  # type: ignore[assignment]
        torch.nn.utils.clip_grad_norm_(params, 1.0))
    loop.GradientNorm = NoNorm  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        loop.adamw, loop.clip_gradients, loop.GradientNorm = saved  # type: ignore[misc]


def run_ours(prepared: Any, model: str, variant: str, batch_size: int, lr: float, epochs: float,
             seed: int) -> dict[str, float]:
    from optuna_seqclf import HParams, MachineSettings, TrainSettings
    from optuna_seqclf.training.loop import evaluate, fine_tune

    batching = variant.split("+")[0]
    settings = TrainSettings(model=model, epochs=epochs, batching=batching)
    enc = prepared.encoded(settings.max_seq_length)
    machine = MachineSettings(device="cpu")
    with plain_components() if variant.endswith("+plain") else contextlib.nullcontext():
        result = fine_tune(model, prepared.tokenizer, enc.train, enc.dev, prepared.corpus.id2label,
                           HParams(batch_size, lr), settings, seed, machine=machine)
    test = evaluate(result.model, enc.test, prepared.tokenizer, machine.eval_batch_size)
    labels = np.asarray(enc.test["labels"])
    return {"dev_f1": macro_f1(np.asarray(enc.dev["labels"]), result.dev.predictions),
            "test_f1": macro_f1(labels, test.predictions), "train_s": result.train_metrics["train_runtime"]}


def run_trainer(prepared: Any, model: str, batch_size: int, lr: float, epochs: float, seed: int) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification

    enc = prepared.encoded(128)
    id2label = prepared.corpus.id2label
    train, dev, test = (split.remove_columns("length") for split in (enc.train, enc.dev, enc.test))

    def model_init(trial: Any = None) -> Any:
        return AutoModelForSequenceClassification.from_pretrained(
            model, num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})

    train_s, (dev_logits, test_logits) = trainer_run(model_init, train, (dev, test), prepared.tokenizer, batch_size,
                                                     lr, epochs, seed)
    return {"dev_f1": macro_f1(np.asarray(dev["labels"]), dev_logits.argmax(-1)),
            "test_f1": macro_f1(np.asarray(test["labels"]), test_logits.argmax(-1)), "train_s": train_s}


def trainer_run(model_init: Any, train: Any, splits: tuple[Any, ...], tokenizer: Any, batch_size: int, lr: float,
                epochs: float, seed: int) -> tuple[float, list[np.ndarray]]:
    """The HF Trainer with its defaults (no evaluation, saving or logging during training) on ``train``: its
    training time and the logits it predicts for each of ``splits``."""
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, per_device_eval_batch_size=128,
                                 learning_rate=lr, num_train_epochs=epochs, seed=seed, save_strategy="no",
                                 eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
                                 use_cpu=True)
        trainer = Trainer(model_init=model_init, args=args, train_dataset=train, processing_class=tokenizer)
        train_s = float(trainer.train().metrics["train_runtime"])
        return train_s, [np.asarray(trainer.predict(split).predictions) for split in splits]


class Runs:
    """The cache of finished runs, keyed by corpus/variant/batch size/learning rate/epochs/seed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def key(corpus: str, variant: str, batch_size: int, lr: float, epochs: float, seed: int) -> str:
        return f"{corpus}|{variant}|bs{batch_size}|lr{lr:g}|ep{epochs:g}|seed{seed}"

    def get(self, key: str) -> dict[str, float] | None:
        return self.runs.get(key)

    def put(self, key: str, value: dict[str, float]) -> None:
        self.runs[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.runs, indent=1, sort_keys=True))
        tmp.replace(self.path)


def train_or_cached(runs: Runs, key: str, train: Any, objective: str = "f1") -> dict[str, float]:
    """The cached run of ``key``, or ``train()``'s, timed, cached and printed (its ``test_<objective>``)."""
    cached = runs.get(key)
    if cached is not None:
        return cached
    begun = time.perf_counter()
    result = train()
    result["wall_s"] = time.perf_counter() - begun
    runs.put(key, result)
    print(f"{key}: test {objective} {result['test_' + objective]:.4f}, dev {objective} {result['dev_' + objective]:.4f}"
          f", train {result['train_s']:.1f} s", flush=True)
    return result


def paired(a: list[float], b: list[float]) -> str:
    """Mean paired difference a - b (points), its t statistic, and how many seeds a wins."""
    diff = [100 * (x - y) for x, y in zip(a, b)]
    mean = statistics.fmean(diff)
    sd = statistics.stdev(diff) if len(diff) > 1 else float("nan")
    t = mean / (sd / math.sqrt(len(diff))) if sd and sd > 0 else float("nan")
    return f"{mean:+.2f} pt (paired t {t:.1f}, wins {sum(d > 0 for d in diff)}/{len(diff)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default="sst2-2k,tweet-emotion,goemotions-10")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr-grid", default="1e-4,2e-4,4e-4")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--report-only", action="store_true", help="report the cached runs, train nothing")
    args = parser.parse_args()
    import torch

    from optuna_seqclf import MachineSettings, TrainSettings, prepare
    from optuna_seqclf.runtime import configure_process

    configure_process()  # the command line's process set-up: all cores, malloc keeping freed buffers
    model = _common.minilm()
    runs = Runs(args.cache)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    bs, epochs = args.batch_size, args.epochs
    lines = [f"MiniLM (all-MiniLM-L6-v2), batch size {bs}, {epochs:g} epoch(s), max length 128, fp32, CPU "
             f"({torch.get_num_threads()} threads); learning rate per corpus: the best dev macro-F1 of `random`, "
             f"seed 1, over {args.lr_grid}. Test macro-F1 mean ± std over seeds {args.seeds}; paired: the variant "
             "minus the Trainer on the same seed; train s: mean training time of a run (no evaluation).", ""]
    corpora = {name: prepare(corpus_spec(name), TrainSettings(model=model), MachineSettings(device="cpu"))
               for name in args.corpora.split(",")}
    rates = [float(r) for r in args.lr_grid.split(",")]
    picked: dict[str, dict[float, dict[str, float]]] = {}
    for corpus, prepared in corpora.items():  # the learning rate first, for every corpus
        keys = {r: Runs.key(corpus, "random", bs, r, epochs, 1) for r in rates}
        if args.report_only and not all(runs.get(k) for k in keys.values()):
            continue
        picked[corpus] = {r: train_or_cached(runs, k, functools.partial(run_ours, prepared, model, "random", bs, r,
                                                                          epochs, 1)) for r, k in keys.items()}
    lr = {corpus: max(rates, key=lambda r, c=corpus: picked[c][r]["dev_f1"]) for corpus in picked}
    results = {corpus: {v: [] for v in variants} for corpus in picked}
    for seed in seeds:  # seed by seed over every corpus: a bench stopped early has as many seeds everywhere
        for corpus in picked:
            prepared = corpora[corpus]
            for variant in variants:
                key = Runs.key(corpus, variant, bs, lr[corpus], epochs, seed)
                if args.report_only and runs.get(key) is None:
                    continue
                train = (functools.partial(run_trainer, prepared, model, bs, lr[corpus], epochs, seed)
                         if variant == "trainer" else
                         functools.partial(run_ours, prepared, model, variant, bs, lr[corpus], epochs, seed))
                results[corpus][variant].append(train_or_cached(runs, key, train))
    for corpus in picked:
        lines += report_corpus(corpus, len(corpora[corpus].corpus.id2label), lr[corpus], picked[corpus],
                               results[corpus])
    _common.record("Issue 23: test macro-F1, our loop's variants vs the HF Trainer (bench/quality.py)", lines)


def report_corpus(corpus: str, classes: int, lr: float, picked: dict[float, dict[str, float]],
                  results: dict[str, list[dict[str, float]]]) -> list[str]:
    grid = ", ".join(f"{r:g}: {v['dev_f1']:.4f}" for r, v in picked.items())
    lines = [f"### {corpus} ({classes} classes), learning rate {lr:g} (dev F1 of `random`, seed 1: {grid})", "",
             "| variant | seeds | test macro-F1 | dev macro-F1 | vs Trainer (test, paired) | train s "
             "| speed vs Trainer |",
             "|---|---|---|---|---|---|---|"]
    base = results.get("trainer", [])
    for variant, rows in results.items():
        if not rows:
            continue
        test = [r["test_f1"] for r in rows]
        dev = [r["dev_f1"] for r in rows]
        spread = lambda xs: f"{statistics.fmean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.4f}"  # noqa: E731
        n = min(len(rows), len(base))
        versus = paired(test[:n], [r["test_f1"] for r in base[:n]]) if variant != "trainer" and n > 1 else "—"
        train_s = statistics.fmean(r["train_s"] for r in rows)
        speed = (f"{statistics.fmean(r['train_s'] for r in base) / train_s:.2f}x" if base and variant != "trainer"
                 else "—")
        lines.append(f"| {variant} | {len(rows)} | {spread(test)} | {spread(dev)} | {versus} | {train_s:.1f} "
                     f"| {speed} |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
