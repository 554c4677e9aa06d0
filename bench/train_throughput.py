"""P1: training throughput of a tuning trial against the best hand-written loop, same model, data, batch size.

The hand-written loop is what an expert would write for speed: pre-tokenised tensors, length-bucketed
batches with dynamic padding (the same grouping the Trainer uses: shuffled mega-batches of 50 batches,
sorted by length), fused AdamW, a linear schedule, no logging, and no gradient clipping (a second
variant clips at norm 1.0, as ``tune`` does, to compare the same work). Our trial is ``training.loop.fine_tune``
as ``tune`` runs it. Runs alternate (loop, ours, loop, ours, ...) so drift in the
machine's speed hits both; the ratio compares the medians. Every loop runs with the malloc settings
``tune`` makes (``keep_freed_memory``) and trains a copy of the weights taken off the checkpoint's file
mapping before its clock starts (``own_weights``), so the ratio compares the loops alone.

With ``--interleaved`` the two run in one process, a step of each in turn, so every step of ours is paired
with a step of the loop taken at the same moment of the machine (no clipping variant then).

    python bench/train_throughput.py [--batch-size 16] [--reps 2] [--epochs 1] [--interleaved]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import _common
import numpy as np
import torch


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches = []
    for start in range(0, len(perm), mega):
        chunk = perm[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return batches


def hand_steps(model_path: str, encoded, batch_size: int, lr: float, epochs: int, seed: int,  # type: ignore[no-untyped-def]
               clip: bool = False, device: str = "cpu", dtype: torch.dtype | None = None) -> Iterator[int]:
    """The hand-written loop, one optimizer step per ``next()``: yields the examples of each step (0 when set up).

    On a GPU it autocasts to ``dtype`` when given (bf16 needs no loss scaling)."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2).to(device)
    with torch.no_grad():  # off the checkpoint's file mapping, as ours trains (else its first step faults it in)
        for p in model.parameters():
            p.data = p.data.clone()
    ids = [torch.tensor(x) for x in encoded["input_ids"]]
    labels = torch.tensor(encoded["labels"])
    lengths = np.array(encoded["length"])
    rng = np.random.default_rng(seed)
    steps = epochs * -(-len(ids) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / steps)
    model.train()
    yield 0
    for _ in range(epochs):
        for idx in length_grouped_batches(lengths, batch_size, rng):
            width = int(lengths[idx].max())
            input_ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(input_ids=input_ids.to(device, non_blocking=True),
                             attention_mask=mask.to(device, non_blocking=True),
                             labels=labels[idx].to(device, non_blocking=True)).loss
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            yield len(idx)


def hand_loop(model_path: str, encoded, batch_size: int, lr: float, epochs: int, seed: int,  # type: ignore[no-untyped-def]
              clip: bool = False, device: str = "cpu", dtype: torch.dtype | None = None) -> tuple[float, int]:
    steps = hand_steps(model_path, encoded, batch_size, lr, epochs, seed, clip, device, dtype)
    next(steps)  # set up: not timed
    started = time.perf_counter()
    examples = sum(steps)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, examples


def interleaved(model_path: str, prepared, encoded, batch_size: int, lr: float, epochs: int,  # type: ignore[no-untyped-def]
                seed: int) -> tuple[list[float], list[float]]:
    """Our trial and the hand loop in one process, one step of each in turn: (our step times, the loop's).

    The loop's step runs inside our ``on_step`` hook and its time is taken out of ours, so both see the
    same moment of the machine, step by step."""
    from optuna_seqclf.settings import HParams, TrainSettings
    from optuna_seqclf.training.loop import fine_tune

    loop = hand_steps(model_path, encoded.train, batch_size, lr, epochs, seed)
    next(loop)
    ours_s: list[float] = []
    loop_s: list[float] = []
    mark = [time.perf_counter()]

    def on_step(done: int, total: int) -> None:
        ours_s.append(time.perf_counter() - mark[0])
        began = time.perf_counter()
        next(loop, None)
        loop_s.append(time.perf_counter() - began)
        mark[0] = time.perf_counter()

    settings = TrainSettings(model=model_path, epochs=epochs, seed=seed)
    fine_tune(model_path, prepared.tokenizer, encoded.train, encoded.dev.select(range(8)), prepared.corpus.id2label,
              HParams(batch_size, lr), settings, seed, on_step=on_step)
    return ours_s[1:], loop_s[1:]  # the first of ours also holds the model load: both left out


def ours(model_path: str, prepared, encoded, batch_size: int, lr: float, epochs: int, seed: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from optuna_seqclf.settings import HParams, TrainSettings
    from optuna_seqclf.training.loop import fine_tune

    settings = TrainSettings(model=model_path, epochs=epochs, seed=seed)
    result = fine_tune(model_path, prepared.tokenizer, encoded.train, encoded.dev, prepared.corpus.id2label,
                       HParams(batch_size, lr), settings, seed)
    return result.train_metrics["train_runtime"], len(encoded.train) * epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--interleaved", action="store_true",
                        help="one process, a step of ours then a step of the hand loop (no clipping variant)")
    args = parser.parse_args()

    from optuna_seqclf import DataSpec, TrainSettings, prepare
    from optuna_seqclf.data.corpus import encode_corpus
    from optuna_seqclf.runtime import keep_freed_memory

    keep_freed_memory()  # the allocator settings `tune` uses, for every loop here (bench/allocator.py: its own gain)
    model_path = _common.minilm()
    prepared = prepare(DataSpec(_common.SST2_2K), TrainSettings(model=model_path))
    encoded = encode_corpus(prepared.corpus, prepared.tokenizer, 128)
    if args.interleaved:
        return run_interleaved(args, model_path, prepared, encoded)
    loop_rates, clip_rates, our_rates = [], [], []
    for rep in range(args.reps):
        secs, n = hand_loop(model_path, encoded.train, args.batch_size, args.lr, args.epochs, seed=rep + 1)
        loop_rates.append(n / secs)
        secs_clip, _ = hand_loop(model_path, encoded.train, args.batch_size, args.lr, args.epochs, seed=rep + 1,
                                 clip=True)
        clip_rates.append(n / secs_clip)
        secs_ours, n_ours = ours(model_path, prepared, encoded, args.batch_size, args.lr, args.epochs, seed=rep + 1)
        our_rates.append(n_ours / secs_ours)
        print(f"rep {rep + 1}: hand loop {n / secs:.1f} ex/s ({secs:.1f} s), with clipping {n / secs_clip:.1f}, "
              f"optuna-seqclf {n_ours / secs_ours:.1f} ex/s ({secs_ours:.1f} s)", flush=True)
    loop, mine = statistics.median(loop_rates), statistics.median(our_rates)
    clipped = statistics.median(clip_rates)
    _common.record("P1 trial training throughput vs the best hand-written loop", [
        f"SST-2 2k train ({len(encoded.train)} examples), all-MiniLM-L6-v2, max length 128, batch size "
        f"{args.batch_size}, lr {args.lr:g}, {args.epochs} epoch(s), {args.reps} alternating runs each",
        f"- hand-written loop: {', '.join(f'{r:.1f}' for r in loop_rates)} examples/s (median {loop:.1f})",
        f"- hand-written loop + clipping at 1.0: {', '.join(f'{r:.1f}' for r in clip_rates)} examples/s "
        f"(median {clipped:.1f})",
        f"- optuna-seqclf trial (clips at 1.0): {', '.join(f'{r:.1f}' for r in our_rates)} examples/s "
        f"(median {mine:.1f})",
        f"- **ratio optuna-seqclf / hand loop: {mine / loop:.3f}** (target >= 0.95); "
        f"against the hand loop doing the same clipping: {mine / clipped:.3f}",
    ])


def run_interleaved(args: argparse.Namespace, model_path: str, prepared, encoded) -> None:  # type: ignore[no-untyped-def]
    ratios, lines = [], []
    for rep in range(args.reps):
        ours_s, loop_s = interleaved(model_path, prepared, encoded, args.batch_size, args.lr, args.epochs, rep + 1)
        ratios.append(sum(loop_s) / sum(ours_s))
        paired = sorted(b / a for a, b in zip(ours_s, loop_s))
        lines.append(f"- run {rep + 1}: {len(ours_s)} steps each; ours {sum(ours_s):.1f} s, hand loop "
                     f"{sum(loop_s):.1f} s: **{ratios[-1]:.3f}**; step by step (loop/ours) median "
                     f"{paired[len(paired) // 2]:.3f}, 10-90% {paired[len(paired) // 10]:.3f}-"
                     f"{paired[9 * len(paired) // 10]:.3f}")
        print(lines[-1], flush=True)
    _common.record("P1 trial training throughput vs the best hand-written loop (interleaved step by step)", [
        f"SST-2 2k train ({len(encoded.train)} examples), all-MiniLM-L6-v2, max length 128, batch size "
        f"{args.batch_size}, lr {args.lr:g}, {args.epochs} epoch(s); one process, our trial and the hand loop "
        "(no clipping) taking steps in turn, the first step of each left out; ratio = the loop's time / ours",
        *lines,
        f"- **ratio optuna-seqclf / hand loop: {statistics.median(ratios):.3f}** (median of {args.reps} runs; "
        "target >= 0.95)",
    ])


if __name__ == "__main__":
    main()
