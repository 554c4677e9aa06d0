"""Process settings: the fast exit keeps what a normal exit does that matters, glibc keeps freed buffers, and
no library call changes its caller's process (those knobs belong to the CLI and workers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from optuna_seqclf.runtime import exit_code_of

# A library's atexit handler and a non-daemon thread still running when the command returns: a normal
# exit runs the one and waits for the other; so must ours.
RUN_CLI = """
import atexit, sys, threading, time
from pathlib import Path
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late_writer():
    time.sleep(0.5)
    (out / "thread").write_text("done")
threading.Thread(target=late_writer).start()
sys.argv = ["optuna-seqclf", *sys.argv[2:]]
from optuna_seqclf.cli.commands import main
main()
raise AssertionError("main() returned")
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_CLI, str(tmp_path), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "status", "says"), [
    (["--help"], 0, "tune"),  # stdout is a pipe here: all of the help must come through
    (["tune"], 2, "Missing argument"),
    (["tune", "no-such-folder"], 1, "no-such-folder: data folder not found"),
    (["train", "--study-name", "never-tuned", "-o", "out"], 1, "never-tuned"),
])
def test_exit_status_output_atexit_and_threads_survive_the_fast_exit(tmp_path: Path, args: list[str], status: int,
                                                                     says: str) -> None:
    proc = _run(tmp_path, *args)
    assert proc.returncode == status, proc.stderr
    assert says in (proc.stdout if status == 0 else proc.stderr)
    assert "Traceback" not in proc.stderr and "main() returned" not in proc.stderr
    if status == 0:
        assert proc.stdout.rstrip().endswith("Show this message and exit.") or "Commands:" in proc.stdout
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "done"


def test_exit_code_of_matches_sys_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code_of(SystemExit()) == 0
    assert exit_code_of(SystemExit(130)) == 130
    assert exit_code_of(SystemExit("stopped: bad thing")) == 1
    assert capsys.readouterr().err == "stopped: bad thing\n"


KEEP_OR_RETURN = """
import sys
import numpy as np
from optuna_seqclf.runtime import keep_freed_memory
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
block = np.ones(100 * 2**20 // 8)  # 100 MB: above glibc's largest default mmap threshold (32 MB)
before = rss_mb()
del block
print(kept, round(before - rss_mb()))
"""


def test_freed_training_buffers_stay_in_the_heap_for_the_next_step() -> None:
    """With glibc's defaults a freed 100 MB block goes back to the OS (to be page-faulted in again on the
    next step); after ``keep_freed_memory`` it stays in the process for the next allocation."""
    import platform
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    released = {}
    for variant in ("defaults", "keep"):
        proc = subprocess.run([sys.executable, "-c", KEEP_OR_RETURN, variant], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        applied, mb = proc.stdout.split()
        assert applied == str(variant == "keep")
        released[variant] = int(mb)
    assert released["defaults"] >= 90  # unmapped at once
    assert released["keep"] <= 10  # kept for reuse


# Calls each public entry point of the library in a fresh process and reports what in the process changed:
# torch's thread count, the log levels and progress bars of optuna/transformers/datasets, warning filters,
# glibc's malloc (does a freed 100 MB block go back to the OS?) and the current CUDA device.
HYGIENE = """
import json, logging, sys, warnings
from pathlib import Path
import numpy as np, torch, datasets, transformers, optuna
import optuna_seqclf as lib

data, model, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(1)

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20

def gives_back_freed_memory():
    block = np.ones(100 * 2**20 // 8)
    before = rss_mb()
    del block
    return before - rss_mb() > 90

def state():
    return {"threads": torch.get_num_threads(),
            "levels": [logging.getLogger(n).getEffectiveLevel() for n in ("optuna", "transformers", "datasets")],
            "bars": [datasets.is_progress_bar_enabled(), transformers.utils.logging.is_progress_bar_enabled()],
            "warning_filters": len(warnings.filters), "frees": gives_back_freed_memory(),
            "cuda_device": torch.cuda.current_device() if torch.cuda.is_available() else None}

spec = lambda name: lib.StudySpec(study_name=name, storage=f"sqlite:///studies/{name}.db")
settings = lib.TrainSettings(model=model, epochs=1)
space = lib.SearchSpace((8,), (1e-3,))
machine = lib.MachineSettings(threads=2, device="cpu")
calls = {
    "tune": lambda: lib.tune(spec("a"), lib.DataSpec(data), settings, space, machine=machine, tracking=None),
    "train_replicas": lambda: lib.train_replicas("a", spec("a").storage, Path("out-a"), (1,), machine=machine,
                                                 tracking=None),
    "run": lambda: lib.run(spec("b"), lib.DataSpec(data), settings, Path("out-b"), space, (1,), machine=machine,
                           tracking=None),
    "study_result": lambda: lib.study_result("a", spec("a").storage),
}
# Importing torch's and scikit-learn's training modules adds warning filters of their own (sympy does), so a
# first fine_tune imports them all; it is checked too, but for warning filters.
before = state()
prepared = lib.prepare(lib.DataSpec(data), settings, machine)
encoded = prepared.encoded(settings.max_seq_length)
from optuna_seqclf.training.loop import fine_tune
fine_tune(model, prepared.tokenizer, encoded.train, encoded.dev, prepared.corpus.id2label, lib.HParams(8, 1e-3),
          settings, 1, machine=machine, on_epoch=lambda epoch, metrics: None)
after = state()
changed = {"fine_tune": sorted(k for k in before if before[k] != after[k] and k != "warning_filters")}
for name, call in calls.items():
    before = state()
    if mode == "configure":  # the control: what the command line does to its own process
        lib.configure_process(threads=2)
    call()
    after = state()
    changed[name] = sorted(k for k in before if before[k] != after[k])
print(json.dumps(changed))
"""


@pytest.mark.parametrize("mode", ["library", "configure"])
def test_library_calls_leave_the_callers_process_as_it_was(tmp_path: Path, tiny_model: Path, mode: str) -> None:
    """tune, train_replicas, run and study_result change nothing process-wide; ``configure_process`` (what the
    CLI and worker processes call) does, and the same check sees it."""
    import json
    import platform

    from conftest import EXAMPLE_DATA

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("reads /proc and glibc's malloc")
    proc = subprocess.run([sys.executable, "-c", HYGIENE, str(EXAMPLE_DATA), str(tiny_model), mode], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    changed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(changed) == ["fine_tune", "run", "study_result", "train_replicas", "tune"]
    if mode == "library":
        assert changed == {name: [] for name in changed}
    else:  # the first call finds the process as Python left it; configure_process changes all of this
        assert changed["tune"] == ["bars", "frees", "levels", "threads", "warning_filters"]
