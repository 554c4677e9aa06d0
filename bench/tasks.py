"""Issue 25: multi-label and regression, our training loop against the HF Trainer, same model, settings, seeds.

For each corpus, ``ours`` (``fine_tune`` with the default settings, ``--task`` as the corpus needs) and
``trainer`` (the HF Trainer with its defaults: random batches padded per batch, fused AdamW, linear decay
without warm-up, no weight decay, clipping at 1.0; the model built with the same ``problem_type``, so its own
BCE-with-logits / MSE loss) train the same (model, batch size, learning rate, epochs) with each seed. Both
are scored on the test split by the same code (``training.outputs.task_metrics``: a label at probability 0.5;
the score itself):

``ours`` trains on batches of similar lengths in a random order (``grouped-shuffled``, single-label's default);
``ours, random batches`` with ``batching="random"`` (the Trainer's own batches: is any gap the batching?). What
this bench found made random batches the default for multi-label (``--batching auto``, ``settings.TASK_BATCHING``).

- ``goemotions-ekman-4k``: multi-label, the first 4000 / 1000 / 1000 examples of GoEmotions' train / dev /
  test files (JSON Lines, a ``labels`` list), their 28 emotions grouped into the paper's Ekman taxonomy (anger,
  disgust, fear, joy, sadness, surprise, neutral; an example keeps every group its emotions fall in). On all
  28 labels neither trainer learnt anything at 2e-4 (2 epochs) or 5e-4 (4 epochs): every sigmoid below 0.5,
  micro-F1 0 (the rare labels' BCE pulls every output down); the seven groups are learnt. Objective micro-F1;
  macro-F1 and samples-F1 beside.
- ``stsb``: regression on sentence pairs (0-5 score), the whole STS-B train / dev / test. Pearson; Spearman
  beside.

train s: training time of a run (no evaluation); speed: the Trainer's mean train s over ours. Issue 23's
single-label figure to compare with is bench/quality.py's (grouped-shuffled, the default, 1.69x-1.98x).

Every run is cached in ``--cache`` (JSON, after each run), so the bench resumes and a later invocation only
reports. One process, all cores; seed by seed over every corpus, both variants of a seed one after the other.

    python bench/tasks.py [--corpora goemotions-ekman-4k,stsb] [--seeds 1,2,3,4,5] [--report-only]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import _common
import numpy as np
from quality import Runs, paired, train_or_cached, trainer_run

CACHE = Path(__file__).resolve().parent / "tasks_runs.json"
CORPORA = {  # name: (task, metric keys, the first being the objective; batch size, learning rate, epochs)
    "goemotions-ekman-4k": ("multi-label", ("micro_f1", "f1", "samples_f1"), 16, 1e-4, 2.0),
    "stsb": ("regression", ("pearson", "spearman"), 16, 1e-4, 1.0),
}


EKMAN = {  # GoEmotions' emotions by Ekman group (the dataset's own ekman_mapping.json)
    "anger": ("anger", "annoyance", "disapproval"), "disgust": ("disgust",), "fear": ("fear", "nervousness"),
    "joy": ("joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief", "pride",
            "admiration", "desire", "caring"),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"), "neutral": ("neutral",),
}


def goemotions_slice(target: Path) -> Path:
    """The first 4000 / 1000 / 1000 lines of GoEmotions' train / dev / test, labels grouped by ``EKMAN``, as
    JSON Lines in ``target``."""
    sizes = {"train": 4000, "dev": 1000, "test": 1000}
    if all((target / f"{name}.jsonl").exists() for name in sizes):
        return target
    group = {emotion: name for name, emotions in EKMAN.items() for emotion in emotions}
    target.mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        with (_common.SHARED_DATA / "goemotions" / f"{name}.jsonl").open(encoding="utf-8") as fh:
            records = [json.loads(next(fh)) for _ in range(size)]
        rows = [{"text": r["text"], "labels": sorted({group[label] for label in r["labels"]})} for r in records]
        (target / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return target


def corpus_spec(name: str) -> Any:
    from optuna_seqclf import DataSpec

    if name == "goemotions-ekman-4k":
        folder = goemotions_slice(Path(__file__).resolve().parent / ".cache" / name)
        return DataSpec(folder, text_column="text", label_column="labels")
    return DataSpec(_common.SHARED_DATA / "stsb", text_column="sentence1", text_pair_column="sentence2",
                    label_column="score")


def scores(task: str, truth: Any, logits: np.ndarray) -> dict[str, float]:
    from optuna_seqclf.training.outputs import decide, task_metrics

    predictions, _ = decide(task, np.asarray(logits, np.float64))
    return task_metrics(task, np.asarray(truth), predictions)


def run_ours(prepared: Any, model: str, task: str, batch_size: int, lr: float, epochs: float,
             seed: int, batching: str | None = None) -> dict[str, float]:
    from optuna_seqclf import HParams, MachineSettings, TrainSettings
    from optuna_seqclf.training.loop import evaluate, fine_tune

    settings = TrainSettings(model=model, epochs=epochs, task=task)
    settings = settings if batching is None else replace(settings, batching=batching)
    enc = prepared.encoded(settings.max_seq_length)
    machine = MachineSettings(device="cpu")
    result = fine_tune(model, prepared.tokenizer, enc.train, enc.dev, prepared.corpus.id2label,
                       HParams(batch_size, lr), settings, seed, machine=machine)
    test = evaluate(result.model, enc.test, prepared.tokenizer, machine.eval_batch_size)
    return {**{f"dev_{k}": v for k, v in result.dev.metrics.items()},
            **{f"test_{k}": v for k, v in test.metrics.items()}, "train_s": result.train_metrics["train_runtime"]}


def run_trainer(prepared: Any, model: str, task: str, batch_size: int, lr: float, epochs: float,
                seed: int) -> dict[str, float]:
    import datasets
    from transformers import AutoModelForSequenceClassification

    enc = prepared.encoded(128)
    id2label = prepared.corpus.id2label
    # float32 targets, as BCE-with-logits and MSE take them (the Trainer's collator keeps the column's dtype)
    label_type = datasets.Value("float32")
    splits = []
    for split in (enc.train, enc.dev, enc.test):
        split = split.remove_columns("length")
        feature = datasets.Sequence(label_type) if task == "multi-label" else label_type
        splits.append(split.cast_column("labels", feature))
    train, dev, test = splits
    problem = {"multi-label": "multi_label_classification", "regression": "regression"}[task]

    def model_init(trial: Any = None) -> Any:
        if task == "regression":
            return AutoModelForSequenceClassification.from_pretrained(model, num_labels=1, problem_type=problem)
        return AutoModelForSequenceClassification.from_pretrained(
            model, num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            problem_type=problem)

    train_s, (dev_logits, test_logits) = trainer_run(model_init, train, (dev, test), prepared.tokenizer, batch_size,
                                                     lr, epochs, seed)
    dev_scores, test_scores = scores(task, dev["labels"], dev_logits), scores(task, test["labels"], test_logits)
    return {**{f"dev_{k}": v for k, v in dev_scores.items()}, **{f"test_{k}": v for k, v in test_scores.items()},
            "train_s": train_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--seeds", default="1,2,3,4,5")
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
    names = args.corpora.split(",")
    corpora = {name: prepare(corpus_spec(name), TrainSettings(model=model, task=CORPORA[name][0]),
                             MachineSettings(device="cpu")) for name in names}
    variants = {"trainer": run_trainer, "ours": functools.partial(run_ours, batching="grouped-shuffled"),
                "ours, random batches": functools.partial(run_ours, batching="random")}
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {v: [] for v in variants} for name in names}
    for seed in seeds:
        for name, prepared in corpora.items():
            task, _, bs, lr, epochs = CORPORA[name]
            for variant, run in variants.items():
                key = Runs.key(name, variant, bs, lr, epochs, seed)
                if args.report_only and runs.get(key) is None:
                    continue
                train = functools.partial(run, prepared, model, task, bs, lr, epochs, seed)
                results[name][variant].append(train_or_cached(runs, key, train, CORPORA[name][1][0]))
    lines = [f"MiniLM (all-MiniLM-L6-v2), max length 128, fp32, CPU ({torch.get_num_threads()} threads); mean ± std "
             f"over seeds {args.seeds}; paired: ours minus the Trainer on the same seed (points); speed: the "
             "Trainer's mean train s over ours.", ""]
    for name in names:
        lines += report_corpus(name, len(corpora[name].corpus.id2label), results[name])
    _common.record("Issue 25: multi-label and regression, our loop vs the HF Trainer (bench/tasks.py)", lines)


def report_corpus(name: str, labels: int, results: dict[str, list[dict[str, float]]]) -> list[str]:
    task, keys, bs, lr, epochs = CORPORA[name]
    head = " | ".join(f"test {k}" for k in keys)
    lines = [f"### {name} ({task}, {labels} label(s)), batch size {bs}, learning rate {lr:g}, {epochs:g} epoch(s)",
             "", f"| variant | seeds | {head} | dev {keys[0]} | test {keys[0]} vs Trainer (paired) | train s | speed |",
             "|---|---|" + "---|" * len(keys) + "---|---|---|---|"]
    base = results["trainer"]
    for variant, rows in results.items():
        if not rows:
            continue
        spread = lambda xs: f"{statistics.fmean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.4f}"  # noqa: E731
        tests = " | ".join(spread([r[f"test_{k}"] for r in rows]) for k in keys)
        n = min(len(rows), len(base))
        versus = (paired([r[f"test_{keys[0]}"] for r in rows[:n]], [r[f"test_{keys[0]}"] for r in base[:n]])
                  if variant != "trainer" and n > 1 else "—")
        train_s = statistics.fmean(r["train_s"] for r in rows)
        speed = (f"{statistics.fmean(r['train_s'] for r in base) / train_s:.2f}x" if base and variant != "trainer"
                 else "—")
        lines.append(f"| {variant} | {len(rows)} | {tests} | {spread([r[f'dev_{keys[0]}'] for r in rows])} | "
                     f"{versus} | {train_s:.1f} | {speed} |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
