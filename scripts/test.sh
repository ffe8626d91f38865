#!/usr/bin/env bash
# Sets up (scripts/setup.sh), makes sure the local services the tests use run and Chromium is
# there for the dashboard's browser test, then runs the linters and the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
bash scripts/browser.sh
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
# two processes: the Ray and training tests in one, one after another, the rest beside them
# (tests/conftest.py groups them)
exec .venv/bin/pytest -n 2 --dist loadgroup "$@"
