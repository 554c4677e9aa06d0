"""What a trial's start costs with the weights left in the checkpoint's file mapping and with our own copy.

transformers maps a safetensors checkpoint into memory; a CPU model's parameters point into that
copy-on-write mapping, so the first optimizer step writes to (and faults in) every page of the model.
``model.own_weights`` copies them into the process's memory first. Each trial here is ``fine_tune`` as
``tune`` runs it (the model loaded from disk every trial), cut to its first ``--steps`` steps, one process,
variants alternating after a warm-up trial; the baseline skips ``own_weights``. Measured: the whole call
(load, copy, steps, a 32-example evaluation).

    python bench/first_step.py [--batch-size 32] [--steps 3] [--reps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--reps", type=int, default=6)
    args = parser.parse_args()

    from optuna_seqclf import DataSpec, HParams, TrainSettings, prepare
    from optuna_seqclf.data.corpus import encode_corpus
    from optuna_seqclf.runtime import configure_process
    from optuna_seqclf.training import loop as train_lib

    model_path = _common.minilm()
    settings = TrainSettings(model=model_path, max_steps=args.steps, seed=1)
    configure_process()
    prepared = prepare(DataSpec(_common.SST2_2K), settings)
    encoded = encode_corpus(prepared.corpus, prepared.tokenizer, 128)
    dev = encoded.dev.select(range(32))
    own_weights = train_lib.own_weights
    variants = {"file mapping": lambda model: model, "own copy": own_weights}
    runs: dict[str, list[float]] = {v: [] for v in variants}

    def trial(variant: str) -> float:
        train_lib.own_weights = variants[variant]
        started = time.perf_counter()
        train_lib.fine_tune(model_path, prepared.tokenizer, encoded.train, dev, prepared.corpus.id2label,
                            HParams(args.batch_size, 5e-5), settings, 1)
        return time.perf_counter() - started

    trial("own copy")  # warm-up: imports, first-call set-up
    for rep in range(args.reps):
        for variant in variants:
            runs[variant].append(trial(variant))
            print(f"rep {rep + 1} {variant}: {runs[variant][-1]:.2f} s", flush=True)
    train_lib.own_weights = own_weights
    wall = {v: statistics.median(runs[v]) for v in variants}
    saved = wall["file mapping"] - wall["own copy"]
    _common.record("Trial start: weights in the checkpoint's file mapping vs our own copy", [
        f"SST-2 2k, all-MiniLM-L6-v2, batch size {args.batch_size}, fine_tune cut to {args.steps} steps "
        f"(model loaded from disk each time, 32-example dev evaluation); one process, {args.reps} alternating "
        "runs per variant after a warm-up",
        *(f"- {v}: {', '.join(f'{w:.2f}' for w in runs[v])} s (median {wall[v]:.2f})" for v in variants),
        f"- **{saved:.2f} s saved per trial** ({saved * 36:.0f} s over the 36-point grid)",
    ])


if __name__ == "__main__":
    main()
