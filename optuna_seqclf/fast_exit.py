"""End our own processes without the interpreter's module-by-module teardown.

With torch, transformers, datasets, aim and scikit-learn loaded, a normal Python exit spends 1-1.5 s
tearing down some 5,000 modules (``bench/start_stop.py``). Nothing of ours
needs that: study writes are committed as they happen, Aim runs and files are closed by then.
``exit_now`` keeps what a normal exit does that matters - join non-daemon threads, run ``atexit``
handlers (logging, SQLAlchemy, Aim), flush stdout/stderr - then ends the process, the way
multiprocessing's forked children end.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_code_of(exc: SystemExit) -> int:
    """The status ``sys.exit(arg)`` would give: None -> 0, an int as is, anything else printed and 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def exit_now(code: int) -> NoReturn:
    shutdown_threads = getattr(threading, "_shutdown", None)  # what the interpreter calls first at exit
    if shutdown_threads is not None:
        shutdown_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe: nothing more to write
            stream.flush()
    os._exit(code)
