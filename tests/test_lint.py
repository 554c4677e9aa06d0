"""The code base stays ruff-clean (the same check as `ruff check .`) and type-checks (`mypy`, configured in
pyproject.toml's [tool.mypy])."""

import shutil
import subprocess
import sys

import pytest

from conftest import MYPY, ROOT


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or str(ROOT / ".venv" / "bin" / "ruff")
    if not shutil.which(ruff):
        pytest.skip("ruff not installed")
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_clean(request: pytest.FixtureRequest) -> None:
    """The package type-checks; each ``type: ignore`` names its error code (and a comment its reason). The
    check started when the suite was collected (conftest.py), beside the other tests."""
    pytest.importorskip("mypy", reason="mypy not installed (it is in the dev extras)")
    proc = request.config.stash.get(MYPY, None)
    if proc is None:  # run on its own
        proc = subprocess.Popen([sys.executable, "-m", "mypy"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
