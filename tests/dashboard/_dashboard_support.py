"""What the dashboard tests share besides fixtures: the command, the app, the job records.

A module of its own (not ``conftest``): ``tests/conftest.py`` already owns that module name.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
# The installed entry point: `python -m search.cli` would miss the commands that other modules
# register on the group.
POOLSTRIDE = [str(Path(sys.executable).with_name("poolstride"))]


@dataclass(frozen=True)
class FinishedJob:
    """A database holding one job that ran to its end."""

    url: str
    job_id: int


@dataclass(frozen=True)
class RunningJob:
    """A job claimed by a (fake) worker with some of its trials complete."""

    url: str
    job_id: int
    done: int
    total: int
    worker_id: str


def poolstride(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``poolstride`` command in a child process, output captured; it must succeed."""
    return subprocess.run(
        [*POOLSTRIDE, *args], capture_output=True, text=True, check=True, cwd=ROOT, timeout=300
    )
