"""Training throughput with glibc's malloc keeping freed memory (``runtime.keep_freed_memory``) and without.

Each run is one `tune` trial's training (``train.fine_tune`` after ``configure_process``, as ``tune`` runs
it) in a fresh process: SST-2 2k, all-MiniLM-L6-v2, max length 128, 1 epoch. The baseline process
leaves glibc's defaults (blocks over 32 MB mmapped and unmapped on every step). Runs alternate so
drift in the machine's speed hits both; ratios compare medians. Peak RSS shows the memory it costs.

    python bench/allocator.py [--batch-sizes 16,32] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import _common

ONE_TRIAL = """
import json, resource, sys
from optuna_seqclf import runtime as runtime_lib
from optuna_seqclf import DataSpec, HParams, TrainSettings, prepare
from optuna_seqclf.data.corpus import encode_corpus
from optuna_seqclf.training.loop import fine_tune
variant, data_dir, model_path, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if variant == "glibc-defaults":
    runtime_lib.keep_freed_memory = lambda: False
settings = TrainSettings(model=model_path, epochs=1, seed=1)
prepared = prepare(DataSpec(data_dir), settings)
encoded = encode_corpus(prepared.corpus, prepared.tokenizer, 128)
runtime_lib.configure_process()
result = fine_tune(model_path, prepared.tokenizer, encoded.train, encoded.dev, prepared.corpus.id2label,
                             HParams(batch_size, 5e-5), settings, 1)
print(json.dumps({"seconds": result.train_metrics["train_runtime"], "examples": len(encoded.train),
                  "f1": result.dev.metrics["f1"], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}))
"""


def one_trial(variant: str, model: str, batch_size: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", ONE_TRIAL, variant, str(_common.SST2_2K), model, str(batch_size)],
                          capture_output=True, text=True, cwd=_common.ROOT)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    model = _common.minilm()
    variants = ["glibc-defaults", "keep-freed-memory"]
    lines = [f"SST-2 2k train, all-MiniLM-L6-v2, max length 128, lr 5e-5, 1 epoch, one trial per fresh process; "
             f"{args.reps} alternating runs per variant"]
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for rep in range(args.reps):
            for variant in variants:
                runs[variant].append(one_trial(variant, model, batch_size))
                r = runs[variant][-1]
                print(f"bs {batch_size} rep {rep + 1} {variant}: {r['examples'] / r['seconds']:.1f} ex/s, "
                      f"dev F1 {r['f1']:.4f}, peak RSS {r['peak_mb']:.0f} MB", flush=True)
        rate = {v: statistics.median(r["examples"] / r["seconds"] for r in runs[v]) for v in variants}
        peak = {v: statistics.median(r["peak_mb"] for r in runs[v]) for v in variants}
        same = {round(r["f1"], 6) for v in variants for r in runs[v]}
        for v in variants:
            rates = ", ".join(f"{r['examples'] / r['seconds']:.1f}" for r in runs[v])
            lines.append(f"- batch size {batch_size}, {v}: {rates} examples/s "
                         f"(median {rate[v]:.1f}), peak RSS {peak[v]:.0f} MB")
        lines.append(f"- batch size {batch_size}: **{rate['keep-freed-memory'] / rate['glibc-defaults']:.3f}x** the "
                     f"throughput, {peak['keep-freed-memory'] - peak['glibc-defaults']:+.0f} MB peak RSS; dev F1 "
                     f"{'identical in every run' if len(same) == 1 else 'differs: ' + str(sorted(same))}")
    _common.record("Allocator: glibc malloc keeping freed memory vs its defaults", lines)


if __name__ == "__main__":
    main()
