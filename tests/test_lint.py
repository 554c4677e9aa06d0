"""The code base stays ruff-clean (the same check as `ruff check .`) and type-checks (`mypy`, configured in
pyproject.toml's [tool.mypy])."""

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or str(ROOT / ".venv" / "bin" / "ruff")
    if not shutil.which(ruff):
        pytest.skip("ruff not installed")
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_clean() -> None:
    """The package type-checks; each ``type: ignore`` names its error code (and a comment its reason)."""
    pytest.importorskip("mypy", reason="mypy not installed (it is in the dev extras)")
    result = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
