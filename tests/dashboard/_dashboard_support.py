"""What the dashboard tests share besides fixtures: the command, the app, the job records, and
headless Chromium.

A module of its own (not ``conftest``): ``tests/conftest.py`` already owns that module name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
# The installed entry point: `python -m search.cli` would miss the commands that other modules
# register on the group.
POOLSTRIDE = [str(Path(sys.executable).with_name("poolstride"))]

# The planted job's accuracy per seed of the reference, and the noise of a variant per seed.
PLANTED_BASE = (0.90, 0.91, 0.89)
PLANTED_NOISE = (0.001, -0.002, 0.0005)
# stage, downsample -> the effect planted on val_acc; every other variant has none
PLANTED = {(2, "strided"): -0.05, (1, "conv"): 0.02}
PLANTED_SKIPPED = {
    "stage": 1,
    "choice": "kernel",
    "value": 5,
    "reason": "the space excludes kernel 5 at stage 1",
}


@dataclass(frozen=True)
class FinishedJob:
    """A database holding one job that ran to its end."""

    url: str
    job_id: int


@dataclass(frozen=True)
class PlantedJob:
    """A finished job whose ablation around trial ``reference`` has known effects."""

    url: str
    job_id: int
    reference: int


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


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]


def find_chromium() -> str:
    """The Chromium binary; the test is skipped where there is none, unless ``CI`` is set."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Chromium is not installed (bash scripts/browser.sh installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def chrome(chromium: str, profile: Path, *args: str) -> str:
    """Run headless ``chromium`` with a fresh ``profile`` and ``args``; returns its stdout
    (the DOM, with ``--dump-dom``)."""
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout
