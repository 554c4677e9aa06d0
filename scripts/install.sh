#!/usr/bin/env bash
# Create .venv and install optuna-seqclf with its extras (default: dev = tests, dashboard, postgres, MiniLM).
# torch: kept if already importable; else the CUDA build where an NVIDIA driver is present, and otherwise
# TORCH_SPEC (default torch==2.13.0, a CPU build on machines that carry it locally).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-dev}"
[ -x .venv/bin/python ] || python3 -m venv .venv
PY=.venv/bin/python
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "${TORCH_SPEC:-torch>=2.1}"
  else
    "$PY" -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[${EXTRAS}]" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import optuna_seqclf, torch; print(f'optuna-seqclf {optuna_seqclf.__version__} installed in .venv (torch {torch.__version__})')"
