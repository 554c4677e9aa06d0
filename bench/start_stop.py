"""Fixed costs of a `tune` command: Aim's set-up of a new log folder and the process exit.

Aim sets up a new repo in ~1.3 s (its database migrations run in a child process); ``tune`` now does that
in the background while it tokenises and loads the model. At exit, Python tears down the ~5,000 modules
torch, transformers, datasets, aim and scikit-learn bring (1-1.5 s); the CLI now skips that teardown
(``optuna_seqclf.runtime.exit_now``). Both are measured on a short `tune` (one grid point, 0.1 epoch, SST-2 2k,
all-MiniLM-L6-v2, fresh folders, fresh processes), the variants alternating:

- ``no-track``: ``--no-track`` (no Aim at all: the floor for the Aim cost);
- ``aim-first``: a new log folder set up before the command goes on (what ``tune`` did before);
- ``aim-overlap``: a new log folder, as ``tune`` does it now.

Exit: seconds from the command's end to the process being gone, with the normal interpreter exit
(``sys.exit``) and with ours, on the same command.

    python bench/start_stop.py [--reps 3]
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

WRAPPER = """
import os, sys, time
mode = sys.argv.pop(1)
from optuna_seqclf.cli import commands as cli
from optuna_seqclf.tracking import aim_runs
from pathlib import Path
if mode == "aim-first":  # the old order: the new repo is set up before anything else goes on
    aim_runs._ensure_repo(Path("logs"))
fast_exit = cli.exit_now
def timed_exit(code):
    os.write(2, f"EXIT_AT {time.time():.4f}\\n".encode())
    if mode == "normal-exit":
        sys.exit(code)
    fast_exit(code)
cli.exit_now = timed_exit
sys.argv[0] = "optuna-seqclf"
cli.main()
"""


def one_run(mode: str, model: str, wrapper: Path) -> tuple[float, float]:
    """(wall seconds, exit seconds) of one short tune in a new folder."""
    with tempfile.TemporaryDirectory() as work:
        args = ["tune", str(_common.SST2_2K), "--model", model, "--study-name", "s", "--batch-sizes", "32",
                "--learning-rates", "1e-4", "--epochs", "0.1", "--quiet"]
        if mode == "no-track":
            args.append("--no-track")
        started = time.time()
        proc = subprocess.run([sys.executable, str(wrapper), mode, *args], cwd=work, capture_output=True, text=True)
        ended = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"{mode}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        exit_at = float(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("EXIT_AT")))
        return ended - started, ended - exit_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    model = _common.minilm()
    modes = ["no-track", "aim-first", "aim-overlap", "normal-exit"]
    walls: dict[str, list[float]] = {m: [] for m in modes}
    exits: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "wrapper.py"
        wrapper.write_text(WRAPPER)
        one_run("no-track", model, wrapper)  # warm the file cache and the bytecode first
        for rep in range(args.reps):
            for mode in modes:
                wall, exit_secs = one_run(mode, model, wrapper)
                walls[mode].append(wall)
                exits[mode].append(exit_secs)
                print(f"rep {rep + 1} {mode}: {wall:.2f} s, exit {exit_secs:.2f} s", flush=True)
    med = {m: statistics.median(walls[m]) for m in modes}
    first, overlap = med["aim-first"] - med["no-track"], med["aim-overlap"] - med["no-track"]
    normal, fast = statistics.median(exits["normal-exit"]), statistics.median(exits["aim-overlap"])

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    _common.record("Start-up and exit costs of tune (Aim set-up, interpreter teardown)", [
        "SST-2 2k, all-MiniLM-L6-v2, one grid point, 0.1 epoch (7 training steps) and its dev evaluation; "
        f"new folders, fresh processes; {args.reps} alternating runs per variant, medians",
        *(f"- {m}: {listed(walls[m])} s (median {med[m]:.2f})" for m in modes[:3]),
        f"- Aim on a new log folder adds **{first:.2f} s** when set up first, **{overlap:.2f} s** set up in the "
        f"background",
        f"- process exit after the command: normal interpreter exit {listed(exits['normal-exit'])} s "
        f"(median {normal:.2f}); ours {listed(exits['aim-overlap'])} s (median {fast:.2f}): "
        f"**{normal - fast:.2f} s saved per command**",
    ])


if __name__ == "__main__":
    main()
