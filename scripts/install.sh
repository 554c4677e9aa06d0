#!/usr/bin/env bash
# Create .venv and install optuna-seqclf with its extras (default: dev = tests, dashboard, postgres, MiniLM).
# torch: kept if already importable; else the CUDA build where an NVIDIA driver is present, and otherwise
# TORCH_SPEC (default torch==2.13.0, a CPU build on machines that carry it locally).
# pip's output goes to .venv/install.log and is shown only if something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-dev}"
[ -x .venv/bin/python ] || python3 -m venv .venv
PY=.venv/bin/python
LOG=.venv/install.log
: > "$LOG"
pip_install() {
  if ! "$PY" -m pip install --disable-pip-version-check "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "install failed: pip install $* (full log: $LOG)" >&2
    exit 1
  fi
}
echo "Installing into .venv (log: $LOG) ..."
pip_install --upgrade pip
if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip_install "${TORCH_SPEC:-torch>=2.1}"
  else
    pip_install "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
pip_install -e ".[${EXTRAS}]"
"$PY" -c "import optuna_seqclf, torch; print(f'optuna-seqclf {optuna_seqclf.__version__} installed in .venv (torch {torch.__version__})')"
