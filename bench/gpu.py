"""GPU: mixed precision and several concurrent trials on one GPU, on the standard set.

Part 1, precision: one trial (``training.loop.fine_tune``, as ``tune`` runs it) with ``--precision`` fp32, bf16 and
fp16, and the hand-written loop of ``train_throughput.py`` in fp32 and with bf16 autocast, in rotating order
at each batch size after a warm-up. Training examples/s (median of the reps), dev macro-F1, peak GPU memory.
Part 2, workers: ``tune`` on a grid with ``--workers 1,2,4`` on the one GPU, a fresh study each: wall time,
the sum of the trials' times, the best point, and the GPU's utilisation sampled by nvidia-smi.

Optional: ``--threads 16,4,1`` first times our trial at each torch thread count and keeps the fastest;
``--bert-base "ours fp32,ours bf16"`` times variants on a random BERT-base-sized model too.

    python bench/gpu.py [--batch-sizes 16,32] [--reps 2] [--workers 1,2,4] [--grid-epochs 4]
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
import torch
from train_throughput import hand_loop

VARIANTS = ("ours fp32", "ours bf16", "ours fp16", "loop fp32", "loop bf16")


def one_run(variant: str, model_path: str, prepared, encoded, batch_size: int, seed: int,  # type: ignore[no-untyped-def]
            device: str, max_steps: int | None = None) -> tuple[float, float | None, float]:
    """(training examples/s, dev F1 or None, peak GPU memory in GB) of one run of ``variant``."""
    from optuna_seqclf.settings import HParams, MachineSettings, TrainSettings
    from optuna_seqclf.training.loop import fine_tune

    who, precision = variant.split()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if who == "loop":
        dtype = torch.bfloat16 if precision == "bf16" else None
        secs, n = hand_loop(model_path, encoded.train, batch_size, 5e-5, 1, seed, device=device, dtype=dtype)
        return n / secs, None, peak_gb()
    settings = TrainSettings(model=model_path, epochs=1, max_steps=max_steps, seed=seed)
    machine = MachineSettings(device=device, precision=precision)
    result = fine_tune(model_path, prepared.tokenizer, encoded.train, encoded.dev, prepared.corpus.id2label,
                       HParams(batch_size, 5e-5), settings, seed, machine=machine)
    return result.train_metrics["train_samples_per_second"], result.dev.metrics["f1"], peak_gb()


def peak_gb() -> float:
    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else float("nan")


def precision_part(args: argparse.Namespace, model_path: str, device: str, variants: tuple[str, ...],
                   label: str) -> list[str]:
    from optuna_seqclf import DataSpec, TrainSettings, prepare
    from optuna_seqclf.data.corpus import encode_corpus

    prepared = prepare(DataSpec(_common.SST2_2K), TrainSettings(model=model_path))
    encoded = encode_corpus(prepared.corpus, prepared.tokenizer, 128)
    for variant in variants:  # warm-up: CUDA context, cuBLAS handles, kernels of each dtype
        one_run(variant, model_path, prepared, encoded, 16, 1, device, max_steps=20)
    lines = [f"SST-2 2k train ({len(encoded.train)} examples), {label}, max length 128, lr 5e-5, "
             f"1 epoch, {torch.get_num_threads()} torch threads; {args.reps} runs of each variant in rotating order "
             "after a warm-up; training examples/s (ours: `train_runtime`, without the dev evaluation), dev "
             "macro-F1, peak GPU memory"]
    for batch_size in args.batch_sizes:
        rates: dict[str, list[float]] = {v: [] for v in variants}
        f1s: dict[str, list[float]] = {v: [] for v in variants}
        peak: dict[str, float] = {}
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for variant in order:
                rate, f1, mem = one_run(variant, model_path, prepared, encoded, batch_size, rep + 1, device)
                rates[variant].append(rate)
                if f1 is not None:
                    f1s[variant].append(f1)
                peak[variant] = mem
                print(f"bs {batch_size} rep {rep + 1} {variant}: {rate:.0f} ex/s, F1 {f1}, {mem:.2f} GB", flush=True)
        med = {v: statistics.median(r) for v, r in rates.items()}
        base = variants[0]
        lines.append(f"- batch size {batch_size}:")
        for variant in variants:
            f1 = f" dev F1 {', '.join(f'{x:.4f}' for x in f1s[variant])};" if f1s[variant] else ""
            lines.append(f"  - {variant}: {', '.join(f'{r:.0f}' for r in rates[variant])} examples/s (median "
                         f"{med[variant]:.0f}, **{med[variant] / med[base]:.2f}x {base}**);{f1} "
                         f"peak {peak[variant]:.2f} GB")
        for precision in ("fp32", "bf16"):
            if f"ours {precision}" in med and f"loop {precision}" in med:
                lines.append(f"  - **P1 on this GPU, {precision}: ours / loop "
                             f"{med[f'ours {precision}'] / med[f'loop {precision}']:.3f}**")
    return lines


def threads_part(args: argparse.Namespace, model_path: str, device: str) -> list[str]:
    """Our fp32 trial at several torch thread counts (the CPU side of a GPU trial); keeps the fastest."""
    from optuna_seqclf import DataSpec, TrainSettings, prepare
    from optuna_seqclf.data.corpus import encode_corpus

    prepared = prepare(DataSpec(_common.SST2_2K), TrainSettings(model=model_path))
    encoded = encode_corpus(prepared.corpus, prepared.tokenizer, 128)
    one_run("ours fp32", model_path, prepared, encoded, 16, 1, device, max_steps=20)
    rates: dict[int, list[float]] = {t: [] for t in args.threads}
    for rep in range(args.reps):
        for threads in args.threads[rep % len(args.threads):] + args.threads[:rep % len(args.threads)]:
            torch.set_num_threads(threads)
            rates[threads].append(one_run("ours fp32", model_path, prepared, encoded, args.batch_sizes[0],
                                          rep + 1, device)[0])
            print(f"threads {threads} rep {rep + 1}: {rates[threads][-1]:.0f} ex/s", flush=True)
    med = {t: statistics.median(r) for t, r in rates.items()}
    best = max(med, key=med.__getitem__)
    torch.set_num_threads(best)
    first = args.threads[0]
    return [f"Our fp32 trial, all-MiniLM-L6-v2, batch size {args.batch_sizes[0]}, 1 epoch of SST-2 2k, at "
            f"several torch thread counts; {args.reps} runs each in rotating order"] + [
        f"- {t} threads: {', '.join(f'{r:.0f}' for r in rates[t])} examples/s (median {med[t]:.0f}, "
        f"**{med[t] / med[first]:.2f}x {first} threads**)" for t in args.threads]


def random_bert_base(like: str) -> str:
    """A randomly initialised BERT-base (12 layers, 768 wide) with ``like``'s tokenizer: timing only."""
    import shutil

    from transformers import BertConfig, BertModel

    out = Path(tempfile.mkdtemp(prefix="bert-base-random-"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522)).save_pretrained(out)
    for f in Path(like).iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(f, out / f.name)
    return str(out)


class GpuSampler:
    """nvidia-smi's utilisation and memory readings every 200 ms while it runs."""

    def __init__(self) -> None:
        try:
            self.proc: subprocess.Popen[str] | None = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=subprocess.PIPE, text=True)
        except OSError:
            self.proc = None

    def stop(self) -> tuple[float, float]:
        """(mean utilisation in %, peak memory used in GB); NaN without nvidia-smi."""
        if self.proc is None:
            return float("nan"), float("nan")
        self.proc.terminate()
        out, _ = self.proc.communicate()
        rows = [[float(x) for x in line.split(",")] for line in out.splitlines() if line.count(",") == 1]
        if not rows:
            return float("nan"), float("nan")
        return statistics.fmean(r[0] for r in rows), max(r[1] for r in rows) / 1024


def workers_part(args: argparse.Namespace, model_path: str, device: str) -> list[str]:
    import optuna

    lines = [f"`tune` on SST-2 2k, all-MiniLM-L6-v2, batch sizes {args.grid_batch_sizes}, learning rates "
             f"{args.grid_learning_rates}, {args.grid_epochs} epochs, --no-track, a fresh SQLite study per run; "
             "wall time of the whole command (start-up included); GPU utilisation = mean of nvidia-smi's "
             "readings every 200 ms"]
    walls: dict[int, float] = {}
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            storage = f"sqlite:///{tmp}/w{workers}.db"
            command = [sys.executable, "-m", "optuna_seqclf", "tune", str(_common.SST2_2K), "--model", model_path,
                       "--batch-sizes", args.grid_batch_sizes, "--learning-rates", args.grid_learning_rates,
                       "--epochs", str(args.grid_epochs), "--workers", str(workers), "--device", device,
                       "--no-track", "--quiet", "--study-name", f"w{workers}", "--storage", storage]
            sampler = GpuSampler()
            started = time.perf_counter()
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
            walls[workers] = time.perf_counter() - started
            util, mem = sampler.stop()
            if done.returncode != 0:
                raise SystemExit(f"tune --workers {workers} failed:\n{done.stderr[-3000:]}")
            study = optuna.load_study(study_name=f"w{workers}", storage=storage)
            trials = [t for t in study.trials if t.datetime_complete and t.datetime_start]
            busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
            best = study.best_trial
        speedup = walls[args.workers[0]] / walls[workers]
        lines.append(f"- --workers {workers}: wall {walls[workers]:.1f} s "
                     f"(**{speedup:.2f}x --workers {args.workers[0]}**); "
                     f"{len(trials)} trials, their times sum to {busy:.1f} s; "
                     f"GPU utilisation {util:.0f}%, peak memory {mem:.1f} GB; best dev F1 {best.value:.4f} "
                     f"(batch {best.params['batch_size']}, lr {best.params['learning_rate']:g})")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--grid-batch-sizes", default="8,16,32")
    parser.add_argument("--grid-learning-rates", default="1e-5,3e-5,5e-5,1e-4")
    parser.add_argument("--grid-epochs", type=int, default=4)
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="of: " + ", ".join(VARIANTS))
    parser.add_argument("--threads", default="", help="first try our trial at these torch thread counts")
    parser.add_argument("--bert-base", default="", help="also time these variants on a random BERT-base")
    args = parser.parse_args()
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    args.workers = [int(x) for x in args.workers.split(",")]
    args.threads = [int(x) for x in args.threads.split(",") if x]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU (--device cpu only tries the script out)")
    model_path = _common.minilm()
    from optuna_seqclf.runtime import quiet_libraries

    quiet_libraries()
    if args.threads:
        _common.record("GPU: torch threads of a trial", threads_part(args, model_path, args.device))
    if not args.skip_precision:
        _common.record("GPU: mixed precision, ours and the hand-written loop",
                       precision_part(args, model_path, args.device, tuple(args.variants.split(",")),
                                      "all-MiniLM-L6-v2"))
    if args.bert_base:
        _common.record("GPU: mixed precision on a BERT-base-sized model",
                       precision_part(args, random_bert_base(model_path), args.device,
                                      tuple(args.bert_base.split(",")), "a random BERT-base (12 x 768; timing only)"))
    if not args.skip_workers:
        _common.record("GPU: several concurrent trials on one GPU (tune --workers)",
                       workers_part(args, model_path, args.device))


if __name__ == "__main__":
    main()
