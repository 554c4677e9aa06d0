"""P7: `predict` against `transformers.pipeline("text-classification")`, one replica and the 5-seed ensemble.

SST-2's 6,732-sentence dev split, all-MiniLM-L6-v2 replicas (trained here by `optuna-seqclf run` unless
--replicas names a replicas folder). In one process: the pipeline at each batch size of --pipeline-batch-sizes
on the first 1,000 sentences picks its best; then, alternating, --reps full runs of the pipeline at that
batch size, of our Predictor with one replica, and of the 5-replica ensemble; medians. Labels are compared
on every sentence. Then `optuna-seqclf predict` streams --stream-lines lines (SST-2 train sentences
repeated) in a fresh process, once with a tenth of them, for its peak RSS and examples/s.

    python bench/predict.py [--replicas DIR] [--reps 3] [--stream-lines 1000000]
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


def texts_of(path: Path) -> list[str]:
    return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]


def train_replicas(work: Path) -> Path:
    """Five MiniLM replicas of one point (batch 32, lr 1e-4, 1 epoch) on SST-2 2k, via the real CLI."""
    out = work / "models"
    subprocess.run([sys.executable, "-m", "optuna_seqclf", "run", str(_common.SST2_2K), "--model", _common.minilm(),
                    "--batch-sizes", "32", "--learning-rates", "1e-4", "--epochs", "1", "--no-track", "--quiet",
                    "--task-name", "bench", "-o", str(out)], cwd=work, check=True, stdout=subprocess.DEVNULL)
    return out


def timed(run, texts: list[str]) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    labels = run(texts)
    return time.perf_counter() - started, labels


def stream(replica: Path, lines: int, work: Path) -> tuple[float, float, float]:
    """(examples/s, peak RSS in MB, output size in MB) of `optuna-seqclf predict --format lines` over ``lines``
    lines."""
    sentences = texts_of(_common.SHARED_DATA / "sst2" / "train.txt")
    source = work / f"lines-{lines}.txt"
    with source.open("w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(sentences[i % len(sentences)] + "\n")
    code = ("import resource, subprocess, sys, time\nstarted = time.perf_counter()\n"
            "subprocess.run(sys.argv[1:], check=True)\n"
            "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e3)")
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "optuna_seqclf", "predict", str(replica), str(source),
           "--format", "lines", "-o", str(work / "out.tsv"), "--quiet"]
    seconds, peak = map(float, subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split())
    source.unlink()
    return lines / seconds, peak, (work / "out.tsv").stat().st_size / 1e6


def tiny_classifier(work: Path) -> Path:
    """tests/tiny_model.py's random BERT with a 2-class head, saved as a classifier folder."""
    sys.path.insert(0, str(_common.ROOT / "tests"))
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tiny_model import build_tiny_bert

    base = build_tiny_bert(work / "tiny", texts_of(_common.SST2_2K / "train.txt"), vocab_size=2000)
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=2).save_pretrained(work / "tiny-clf")
    AutoTokenizer.from_pretrained(base).save_pretrained(work / "tiny-clf")
    return work / "tiny-clf"


def compare(replicas: Path, reps: int, batch_sizes: str) -> list[str]:
    """The pipeline at its best batch size, one replica and the 5-replica ensemble, alternating; medians."""
    from transformers import pipeline

    from optuna_seqclf.predict.predictor import Predictor

    one = Predictor.from_pretrained(replicas, replica=1)
    ensemble = Predictor.from_pretrained(replicas)
    dev = texts_of(_common.SHARED_DATA / "sst2" / "dev.txt")
    pipes = {}

    def pipe_labels(batch: int):  # type: ignore[no-untyped-def]
        pipes.setdefault(batch, pipeline("text-classification", model=str(one.folders[0]), device="cpu",
                                         batch_size=batch))
        return lambda texts: [r["label"] for r in pipes[batch](texts, truncation=True, max_length=one.max_seq_length)]

    trial = {b: timed(pipe_labels(b), dev[:1000])[0] for b in map(int, batch_sizes.split(","))}
    best = min(trial, key=trial.get)  # type: ignore[arg-type]
    runs: dict[str, list[float]] = {"pipeline": [], "one replica": [], "ensemble of 5": []}
    variants = {"pipeline": pipe_labels(best), "one replica": lambda t: [p.label for p in one.predict(t)],
                "ensemble of 5": lambda t: [p.label for p in ensemble.predict(t)]}
    timed(variants["one replica"], dev[:256])  # warm-up: first-call set-up and model loads
    timed(variants["ensemble of 5"], dev[:256])
    labels: dict[str, list[str]] = {}
    for rep in range(reps):
        for name, run in variants.items():
            seconds, labels[name] = timed(run, dev)
            runs[name].append(seconds)
            print(f"rep {rep + 1} {name}: {len(dev) / seconds:.0f} examples/s", flush=True)
    wall = {name: statistics.median(values) for name, values in runs.items()}
    rate = {name: len(dev) / seconds for name, seconds in wall.items()}
    disagree = sum(a != b for a, b in zip(labels["pipeline"], labels["one replica"]))
    return [
        f"SST-2 dev ({len(dev):,} sentences), all-MiniLM-L6-v2 replicas, fp32, one process; pipeline batch size "
        "chosen on 1,000 sentences: " + ", ".join(f"B={b} {1000 / s:.0f}/s" for b, s in trial.items())
        + f" -> **B={best}**; then {reps} alternating runs of each on the whole split, medians",
        f"- pipeline (B={best}): {rate['pipeline']:.0f} examples/s; predict, one replica: {rate['one replica']:.0f}"
        f" examples/s = **{rate['one replica'] / rate['pipeline']:.2f}x** the pipeline (goal >= 3x)",
        f"- ensemble of 5 replicas: {wall['ensemble of 5']:.1f} s = "
        f"**{wall['ensemble of 5'] / wall['one replica']:.2f}x** one replica's time (goal <= 5x)",
        f"- labels that differ between the pipeline and one replica: **{disagree}** of {len(dev):,}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=Path, default=None)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pipeline-batch-sizes", default="1,8,32,64,128")
    parser.add_argument("--stream-lines", type=int, default=1_000_000)
    parser.add_argument("--stream-model", default="replica",
                        help="the model of the streaming run: 'replica' (the first replica) or 'tiny' (a 2-layer, "
                             "32-wide random BERT classifier: the same streaming with little compute, for 1M lines)")
    parser.add_argument("--skip-pipeline", action="store_true", help="only the streaming run")
    args = parser.parse_args()

    from optuna_seqclf import configure_process

    configure_process()  # what the command line does: the same for both sides
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        replicas = args.replicas or train_replicas(work)
        lines = [] if args.skip_pipeline else compare(replicas, args.reps, args.pipeline_batch_sizes)
        model = replicas / sorted(p.name for p in replicas.iterdir() if p.is_dir())[0] \
            if args.stream_model == "replica" else tiny_classifier(work)
        tenth = stream(model, args.stream_lines // 10, work)
        full = stream(model, args.stream_lines, work)
    lines.append(
        f"- streaming `predict --format lines` in a fresh process ({args.stream_model} model; SST-2 train sentences "
        f"repeated): {args.stream_lines // 10:,} lines {tenth[0]:.0f} examples/s, peak RSS {tenth[1]:.0f} MB; "
        f"{args.stream_lines:,} lines {full[0]:.0f} examples/s, peak RSS **{full[1]:.0f} MB** (its output file: "
        f"{full[2]:.0f} MB)")
    _common.record("P7 predict vs transformers.pipeline; streaming", lines)


if __name__ == "__main__":
    main()
