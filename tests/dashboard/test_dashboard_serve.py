"""``python -m dashboard.serve``: the warm-up leaves a first page view nothing slow to import, and
the arguments reach Streamlit's own command line unchanged.

Each test starts a fresh interpreter: this one has long imported everything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import streamlit
from _dashboard_support import APP, ROOT, FinishedJob

from search.store import DB_ENV_VAR

# Packages whose first import costs a page view tenths of a second (plotly loads its trace and
# layout classes lazily, narwhals and jinja2 on a first figure or styled table).
SLOW = ("plotly", "_plotly_utils", "narwhals", "jinja2", "pyarrow", "numpy", "scipy")
SLOW += ("sqlalchemy", "alembic", "optuna", "search", "dashboard")

# Every page once, as a first visitor sees them, after the warm-up; prints what they imported.
FIRST_VIEWS = f"""
import json, sys
from streamlit.testing.v1 import AppTest
from dashboard.serve import warm
print(warm(), file=sys.stderr)
before = set(sys.modules)
pages = [(None, {{}}), ("pareto", {{}}), ("stages", {{}}), ("trials", {{}}),
         ("architecture", {{"trial": "3", "a": "3", "b": "5"}})]
for view, params in pages:
    at = AppTest.from_file({str(APP)!r}, default_timeout=60)
    at.run()
    if view:
        at.switch_page(f"views/{{view}}.py")
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe, view  # the page drew its table
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_after_the_warm_up_no_page_imports_anything_slow(finished_job: FinishedJob) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_VIEWS],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, DB_ENV_VAR: finished_job.url},
        timeout=300,
    )
    imported = json.loads(done.stdout.splitlines()[-1])
    assert [m for m in imported if m.split(".")[0] in SLOW] == []
    # the warm-up read the database: its part of the line is a time, not a reason
    assert re.search(
        r"^dashboard warmed in [0-9.]+ s \(code [0-9.]+ s, database: [0-9.]+ s\)$",
        done.stderr,
        re.MULTILINE,
    )


def test_the_arguments_go_to_streamlits_command_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    done = subprocess.run(
        [sys.executable, "-m", "dashboard.serve", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, DB_ENV_VAR: f"sqlite:///{missing}"},
        timeout=120,
    )
    assert done.stdout.strip() == f"Streamlit, version {streamlit.__version__}"
    # a database it cannot read is the page's to report: the warm-up says so and goes on,
    # creating nothing
    assert re.fullmatch(
        r"dashboard warmed in [0-9.]+ s \(code [0-9.]+ s, database: "
        + re.escape(
            f"database sqlite:///{missing} does not exist: run `poolstride db upgrade`, "
            "or pass the right --db)"
        )
        + "\n",
        done.stderr,
    )
    assert not missing.exists()
