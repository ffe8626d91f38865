#!/usr/bin/env bash
# Creates .venv and installs poolstride with its dev tools. Idempotent: a second run is quick.
# torch is pinned and installed first: the CPU wheel of 2.13.0 is what this project runs on, and
# letting another package pull torch in first would fetch a multi-GB CUDA build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU) into .venv" >&2
  pip install "torch==2.13.0"
fi
echo "setup: installing poolstride and its dependencies into .venv" >&2
pip install -e ".[dev]"
.venv/bin/python -c "import search, workers, torch, ray, optuna" || {
  echo "setup: installation is incomplete (see the pip output above)" >&2; exit 1; }
echo "setup: ready" >&2
