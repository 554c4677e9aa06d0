"""Issue 26: what micro-batches cost. Training steps per second of ``fine_tune`` (MiniLM, SST-2 2k, max length
128, fp32) with:

- ``before``: the optimizer step as it was before micro-batches (the whole batch collated and passed once;
  the function is copied here, the rest of the loop is today's), the baseline;
- ``whole``: today's step with no micro-batch given (the default: one pass over the whole batch);
- ``2 x half``, ``4 x quarter``: the same batch as 2 or 4 accumulated micro-batches (the same weights).

Runs alternate variant by variant, rep by rep, in one process (drift hits every variant); the figure is the
median train time of a run (``--steps`` optimizer steps, no evaluation) and its ratio to ``before``.

    python bench/micro_batch.py [--batch-size 32] [--steps 60] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from typing import Any

import _common


def before_step(self: Any, rows: Any) -> Any:
    """``_Loop.train_step`` before micro-batches: collate the batch, one forward and backward, clip, update."""
    from optuna_seqclf.data.batches import collate
    from optuna_seqclf.training.optim import clip_gradients

    batch = collate(self.split, rows, self.pad_id, self.multiple)
    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
    with self.autocast:
        loss = self.model(**batch).loss
    loss.backward()
    grad_norm = clip_gradients(self.params, self.device, self.optimizer, total=self.norm_of(batch["input_ids"]))
    self.optimizer.step()
    self.schedule.step()
    self.optimizer.zero_grad(set_to_none=True)
    self.loss_sum += loss.detach().float()
    return grad_norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from optuna_seqclf import DataSpec, HParams, MachineSettings, TrainSettings, prepare
    from optuna_seqclf.runtime import configure_process
    from optuna_seqclf.training import loop
    from optuna_seqclf.training.loop import fine_tune

    configure_process()
    model, bs = _common.minilm(), args.batch_size
    settings = TrainSettings(model=model, max_steps=args.steps)
    machine = MachineSettings(device="cpu")
    prepared = prepare(DataSpec(_common.SST2_2K), settings, machine)
    encoded = prepared.encoded(settings.max_seq_length)
    variants = {"before": None, "whole": None, "2 x half": bs // 2, "4 x quarter": bs // 4}
    times: dict[str, list[float]] = {name: [] for name in variants}
    today = loop._Loop.train_step
    for rep in range(args.reps):
        for name, micro in variants.items():
            loop._Loop.train_step = before_step if name == "before" else today  # type: ignore[method-assign]
            try:
                result = fine_tune(model, prepared.tokenizer, encoded.train, encoded.dev.select(range(8)),
                                   prepared.corpus.id2label, HParams(bs, 1e-4), settings, seed=rep + 1,
                                   machine=replace(machine, micro_batch_size=micro))
            finally:
                loop._Loop.train_step = today  # type: ignore[method-assign]
            times[name].append(result.train_metrics["train_runtime"])
            print(f"rep {rep + 1} {name}: {times[name][-1]:.2f} s", flush=True)
    base = statistics.median(times["before"])
    lines = [f"all-MiniLM-L6-v2, SST-2 2k, batch size {bs}, {args.steps} steps a run, max length 128, fp32, CPU; "
             f"median of {args.reps} runs per variant, alternating.", "",
             "| variant | micro-batch | train s (median) | steps/s | vs before |", "|---|---|---|---|---|"]
    for name, micro in variants.items():
        median = statistics.median(times[name])
        lines.append(f"| {name} | {micro or bs} | {median:.2f} | {args.steps / median:.2f} | {base / median:.3f}x |")
    _common.record("Issue 26: micro-batches, the cost of accumulation (bench/micro_batch.py)", lines)


if __name__ == "__main__":
    main()
