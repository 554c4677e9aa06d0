"""Process-wide settings: torch threads, glibc's allocator, library log levels, and the fast exit.

Only entry points call these: the command line (``cli.main``) and the worker processes ``tune`` starts.
A library call never changes its caller's process; a Python user who wants the command line's speed
settings in their own process calls ``configure_process`` once.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import platform
import sys
import threading
import warnings
from typing import NoReturn

KEEP_FREED_BYTES = 256 << 20


def default_threads(workers: int = 1) -> int:
    """The CPU cores this process may use, shared among ``workers`` processes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def configure_process(threads: int | None = None, workers: int = 1, *, quiet: bool = True) -> None:
    """What the command line does to its own process before training.

    torch's thread count (``threads``, default: this process's share of the cores among ``workers``),
    glibc's malloc keeping freed training buffers (``keep_freed_memory``), and, with ``quiet``, the
    per-trial chatter of transformers, datasets and Optuna silenced (``quiet_libraries``).
    """
    import torch

    torch.set_num_threads(threads or default_threads(workers))
    keep_freed_memory()
    if quiet:
        quiet_libraries()
    fail_fast_tracking()
    freeze_imported_objects()


def fail_fast_tracking() -> None:
    """A tracking server that stops answering costs a trial seconds, not minutes. MLflow's HTTP client retries a
    failed call 7 times with a backoff doubling from 2 s: 246 s against a closed port, measured; with 2 retries
    from 1 s, 2.6 s (``tracking.mlflow_server`` then leaves the server alone for a minute). Only where the user's
    environment has not set them; worker processes inherit them."""
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
        os.environ.setdefault(name, value)


def freeze_imported_objects() -> None:
    """Leave what the imports made (torch, transformers, datasets: some 265,000 objects) out of every later
    garbage collection. Optuna collects after each trial (``gc_after_trial``, which frees a trial's model
    and optimizer); over the imports' objects that took 0.18 s a trial in a command-line process, for
    nothing: module-level objects are never garbage. Once a process: a later call (``configure_process``
    again, in a program that runs several commands) would freeze what that program made since, garbage
    included."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse the memory a training step frees instead of returning it to the OS.

    Every step frees and allocates again the same large buffers (MiniLM's embedding gradient alone is
    47 MB). glibc serves blocks over 32 MB with a fresh ``mmap`` and unmaps them when freed, so each step
    page-faults them in again: about a sixth of a batch-16 step on a 2-core Xeon (``bench/allocator.py``).
    Raising the mmap and trim thresholds to 256 MB (what ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` do; PyTorch's CPU tuning guide swaps in jemalloc for the same reason) keeps
    them in the heap. The process holds at most that much freed memory. False where malloc is not glibc's.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, KEEP_FREED_BYTES) and mallopt(m_trim_threshold, KEEP_FREED_BYTES))


def quiet_libraries() -> None:
    """Silence the per-trial chatter of transformers/datasets (weights not initialised, etc.) and Optuna's
    own report of a failed trial, with its traceback: ``tune`` reports failed trials in one line."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("optuna").setLevel(logging.CRITICAL)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported (by --tracker mlflow)
    warnings.filterwarnings("ignore", message=".*torch.utils._pytree.*")
    # peft asks transformers 5 for `is_gradient_checkpointing`, deprecated there: a warning for peft's authors
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


# --- the fast exit -------------------------------------------------------------------------------
# With torch, transformers, datasets, aim and scikit-learn loaded, a normal Python exit spends 1-1.5 s
# tearing down some 5,000 modules (``bench/start_stop.py``). Nothing of ours needs that: study writes are
# committed as they happen, Aim runs and files are closed by then. ``exit_now`` keeps what a normal exit
# does that matters - join non-daemon threads, run ``atexit`` handlers (logging, SQLAlchemy, Aim), flush
# stdout/stderr - then ends the process, the way multiprocessing's forked children end.


def exit_code_of(exc: SystemExit) -> int:
    """The status ``sys.exit(arg)`` would give: None -> 0, an int as is, anything else printed and 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def exit_now(code: int) -> NoReturn:
    """End the process now with ``code``, after the parts of a normal exit that matter (see above)."""
    shutdown_threads = getattr(threading, "_shutdown", None)  # what the interpreter calls first at exit
    if shutdown_threads is not None:
        shutdown_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe: nothing more to write
            stream.flush()
    os._exit(code)
