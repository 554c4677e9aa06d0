#!/usr/bin/env bash
# Create .venv and install optuna-seqclf with its extras (default: dev = tests, dashboard, postgres, MiniLM).
# torch: kept if already importable; else the CUDA build where an NVIDIA driver is present, and otherwise
# TORCH_SPEC (default torch==2.13.0, a CPU build on machines that carry it locally).
# pip's output goes to .venv/install.log and is shown only if something fails.
# The test suite's set-up comes with it: the dashboard test drives a headless Chromium, installed here from
# Debian's package where this runs as root with apt-get (elsewhere it says how; SKIP_BROWSER=1 skips it).
# PostgreSQL's server binaries likewise (the tests start their own throwaway server).
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

apt_install() {  # apt_install COMMAND PACKAGE: install PACKAGE when COMMAND is missing and we can
  local have="$1" package="$2"
  command -v "$have" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing $package (Debian's package) for the tests ..."
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package") >>"$LOG" 2>&1; then
      return 0
    fi
    tail -n 20 "$LOG" >&2
    echo "install failed: apt-get install $package (full log: $LOG)" >&2
    exit 1
  fi
  echo "note: $have is not installed, so the tests that need it cannot run (they fail under CI=true)." >&2
  echo "      Install it with: sudo apt-get install $package" >&2
}
if [ "$EXTRAS" = dev ] && [ "${SKIP_BROWSER:-0}" != 1 ]; then
  command -v chromium-browser >/dev/null 2>&1 || apt_install chromium chromium
fi
if [ "$EXTRAS" = dev ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install initdb postgresql
fi
"$PY" -c "import optuna_seqclf, torch; print(f'optuna-seqclf {optuna_seqclf.__version__} installed in .venv (torch {torch.__version__})')"
