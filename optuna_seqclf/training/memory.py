"""Out of memory never loses a point: a run that does not fit is run again with half the micro-batch.

The grid's batch size is the effective batch (``training.loop`` accumulates micro-batches into one step), so a
smaller micro-batch changes how a point is computed, never which point it is: the retry trains the same
(batch size, learning rate, seed) and gives the same model up to float order. A CUDA or MPS out-of-memory error
anywhere in the run (the first step, mid-epoch, an evaluation) frees what the failed attempt held and tries
again with half the micro-batch (and half the evaluation batch) until one example at a time; only a run that
does not fit even then is ``Infeasible``: a state of its own in the study, never retried, never mistaken for a
crash (HF's ``auto_find_batch_size`` shrinks the batch itself, changing the value being tuned; Optuna's
GridSampler counts a failed point as visited).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from optuna_seqclf.errors import SeqClfError
from optuna_seqclf.hooks import Progress, silent
from optuna_seqclf.settings import MachineSettings

T = TypeVar("T")


class Infeasible(SeqClfError):
    """The run does not fit in the device's memory even one example at a time."""


# what the RuntimeErrors of a device out of memory say (torch before OutOfMemoryError; MPS to this day)
_OUT_OF_MEMORY = ("CUDA out of memory", "MPS backend out of memory", "HIP out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """A device out of memory: torch's ``OutOfMemoryError`` (CUDA), or the RuntimeError MPS raises. (A host
    that cannot allocate is not retried: a smaller micro-batch is not what it lacks.)"""
    import torch

    error = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if error is not None and isinstance(exc, error):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OUT_OF_MEMORY)


def release_memory(device: str | None) -> None:
    """Give back to the device what a finished or failed run left cached (its tensors must be unreachable)."""
    import torch

    gc.collect()
    if device is None or device.startswith("cuda"):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    elif device == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def fit_in_memory(run: Callable[[MachineSettings], T], machine: MachineSettings, batch_size: int,
                  progress: Progress = silent) -> tuple[T, MachineSettings]:
    """``run(machine)`` with the micro-batch the machine says (the whole batch by default), and the machine
    settings it ran with; on out of memory, the memory freed and ``run`` again with half the micro-batch and
    half the evaluation batch, down to a micro-batch of 1. Raises ``Infeasible`` when that does not fit either;
    any other error goes through."""
    current = replace(machine, micro_batch_size=min(machine.micro_batch_size or batch_size, batch_size))
    while True:
        try:
            return run(current), current
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # out of the except block: the failed attempt's frames, and the tensors they hold, are gone now
        release_memory(current.device)
        if current.micro_batch_size == 1:
            raise Infeasible(f"out of memory at batch size {batch_size} even one example at a time "
                             f"(micro-batch 1, evaluation batch {current.eval_batch_size})")
        smaller = replace(current, micro_batch_size=max(1, (current.micro_batch_size or 1) // 2),
                          eval_batch_size=max(1, current.eval_batch_size // 2))
        progress(f"out of memory with micro-batch {current.micro_batch_size} (evaluation batch "
                 f"{current.eval_batch_size}); the same point again with micro-batch {smaller.micro_batch_size}")
        current = smaller
