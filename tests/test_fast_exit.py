"""The CLI ends without the interpreter's teardown, but keeps everything a normal exit does that matters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from optuna_seqclf.fast_exit import exit_code_of

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
from optuna_seqclf.cli import main
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
