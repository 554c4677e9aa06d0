"""The clipping norm: every gradient in full vs the embedding's gradient read only on the batch's rows.

``model.GradientNorm`` reads the word-embedding gradient only on the rows of the batch's token ids (the
others are zero). Here: all-MiniLM-L6-v2, SST-2 2k batches in a trial's order, one process; after each
batch's backward both norms are computed ``--calls`` times, alternating, and compared with the time of the
training step itself (forward, backward, optimizer step).

    python bench/grad_norm.py [--batch-size 16] [--batches 20] [--calls 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch

    from optuna_seqclf import DataSpec, TrainSettings, prepare
    from optuna_seqclf.data.batches import TensorSplit, collate, length_grouped_batches
    from optuna_seqclf.data.corpus import encode_corpus
    from optuna_seqclf.runtime import configure_process
    from optuna_seqclf.training.model import load_model, own_weights
    from optuna_seqclf.training.optim import GradientNorm, adamw, clip_gradients

    model_path = _common.minilm()
    settings = TrainSettings(model=model_path)
    configure_process()
    prepared = prepare(DataSpec(_common.SST2_2K), settings)
    split = TensorSplit.from_dataset(encode_corpus(prepared.corpus, prepared.tokenizer, 128).train)
    model = own_weights(load_model(model_path, prepared.corpus.id2label))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, 5e-5, torch.device("cpu"))
    norm_of = GradientNorm(model, params)
    full_ms, rows_ms, step_ms, gaps = [], [], [], []
    batches = length_grouped_batches(split.lengths, args.batch_size, np.random.default_rng(1))
    for i, rows in enumerate(batches[:args.batches + 2]):
        batch = collate(split, rows, prepared.tokenizer.pad_token_id)
        started = time.perf_counter()
        model(**batch).loss.backward()
        step = time.perf_counter() - started
        for _ in range(args.calls):
            began = time.perf_counter()
            full = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
            middle = time.perf_counter()
            ours = norm_of(batch["input_ids"])
            ended = time.perf_counter()
            if i >= 2:  # the first two: warm-up and the shortcut's own check
                full_ms.append(1e3 * (middle - began))
                rows_ms.append(1e3 * (ended - middle))
        gaps.append(abs(float(ours) - float(full)) / float(full))
        began = time.perf_counter()
        clip_gradients(params, torch.device("cpu"), optimizer, total=ours)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:
            step_ms.append(1e3 * (step + time.perf_counter() - began))
    full, rows, step = statistics.median(full_ms), statistics.median(rows_ms), statistics.median(step_ms)
    _common.record("Clipping norm: full gradients vs the batch's embedding rows", [
        f"all-MiniLM-L6-v2, SST-2 2k, batch size {args.batch_size}, {args.batches} batches x {args.calls} "
        "alternating calls, one process",
        f"- full norm (`get_total_norm`, foreach): median {full:.2f} ms per call",
        f"- GradientNorm (embedding rows of the batch): median {rows:.2f} ms per call; "
        f"largest relative difference from the full norm {max(gaps):.1e}; shortcut "
        f"{'on' if norm_of.embedding is not None else 'OFF'}",
        f"- a training step (forward, backward, clipping, AdamW): median {step:.1f} ms; the norm took "
        f"**{100 * full / step:.1f}% of it, now {100 * rows / step:.1f}%**",
    ])


if __name__ == "__main__":
    main()
