"""Issue 26: LoRA against full fine-tuning, side by side: all-MiniLM-L6-v2 on SST-2 2k, batch size 16, one
epoch, max length 128, fp32, CPU, seed 1.

Each method trains at each learning rate of its small grid (``--full-grid``, ``--lora-grid``: LoRA's about ten
times higher, as the default grid under ``--lora`` is); its best learning rate is the one with the best dev
macro-F1, and the table gives that run's dev and test macro-F1, training steps per second, trainable weights,
and the peak resident memory of the process that trained it (each run in a fresh process, so the peaks do not
mix; the model's loading and tokenising are in it too, the same for both methods).

    python bench/lora.py [--full-grid 5e-5,1e-4,2e-4,4e-4] [--lora-grid 5e-4,1e-3,2e-3,4e-3] [--rank 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
from typing import Any

import _common


def one_run(lr: float, rank: int | None) -> dict[str, Any]:
    """Train one (method, learning rate) in this process: scores, speed, weights trained, peak memory."""
    from optuna_seqclf import DataSpec, HParams, MachineSettings, TrainSettings, prepare
    from optuna_seqclf.runtime import configure_process
    from optuna_seqclf.settings import LoraSettings
    from optuna_seqclf.training.loop import evaluate, fine_tune

    configure_process()
    model = _common.minilm()
    settings = TrainSettings(model=model, epochs=1.0, lora=None if rank is None else LoraSettings(rank, 2 * rank))
    machine = MachineSettings(device="cpu")
    prepared = prepare(DataSpec(_common.SST2_2K), settings, machine)
    enc = prepared.encoded(settings.max_seq_length)
    result = fine_tune(model, prepared.tokenizer, enc.train, enc.dev, prepared.corpus.id2label, HParams(16, lr),
                       settings, seed=1, machine=machine)
    test = evaluate(result.model, enc.test, prepared.tokenizer, machine.eval_batch_size)
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in result.model.parameters())
    return {"dev_f1": result.dev.metrics["f1"], "test_f1": test.metrics["f1"],
            "steps_s": result.train_metrics["train_steps_per_second"], "train_s": result.train_metrics["train_runtime"],
            "trainable": trainable, "total": total, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-grid", default="5e-5,1e-4,2e-4,4e-4")
    parser.add_argument("--lora-grid", default="5e-4,1e-3,2e-3,4e-3")
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    lora = f"LoRA (rank {args.rank}, alpha {2 * args.rank}, query+value)"
    grids = {"full fine-tuning": ([float(x) for x in args.full_grid.split(",")], None),
             lora: ([float(x) for x in args.lora_grid.split(",")], args.rank)}
    runs: dict[str, dict[float, dict[str, Any]]] = {name: {} for name in grids}
    spawn = multiprocessing.get_context("spawn")
    for step in range(max(len(g) for g, _ in grids.values())):  # the methods alternate, rate by rate
        for name, (grid, rank) in grids.items():
            if step < len(grid):
                with spawn.Pool(1) as pool:
                    runs[name][grid[step]] = pool.apply(one_run, (grid[step], rank))
                r = runs[name][grid[step]]
                print(f"{name} lr {grid[step]:g}: dev F1 {r['dev_f1']:.4f}, test F1 {r['test_f1']:.4f}, "
                      f"{r['steps_s']:.2f} steps/s, peak {r['peak_mb']:.0f} MB", flush=True)
    lines = ["all-MiniLM-L6-v2, SST-2 2k, batch size 16, 1 epoch, max length 128, fp32, CPU, seed 1; each method's "
             "best learning rate by dev macro-F1 over its grid; each run in its own process (peak RSS).", "",
             "| method | dev F1 per learning rate | best lr | dev F1 | test F1 | steps/s | trainable weights "
             "| peak RSS |",
             "|---|---|---|---|---|---|---|---|"]
    full = None
    for name, by_lr in runs.items():
        best = max(by_lr, key=lambda lr, b=by_lr: b[lr]["dev_f1"])  # type: ignore[misc]
        r = by_lr[best]
        full = full or r
        grid = ", ".join(f"{lr:g}: {v['dev_f1']:.4f}" for lr, v in by_lr.items())
        lines.append(f"| {name} | {grid} | {best:g} | {r['dev_f1']:.4f} | {r['test_f1']:.4f} | {r['steps_s']:.2f} "
                     f"({r['steps_s'] / full['steps_s']:.2f}x) | {r['trainable']:,} of {r['total']:,} | "
                     f"{r['peak_mb']:.0f} MB |")
    _common.record("Issue 26: LoRA vs full fine-tuning (bench/lora.py)", lines)


if __name__ == "__main__":
    main()
