"""The dashboard in a real browser: ``poolstride dashboard`` served, headless Chromium loads it.

Skipped only where Chromium is not installed and ``CI`` is unset; under CI a missing Chromium
fails (``scripts/browser.sh`` installs it).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _dashboard_support import POOLSTRIDE, FinishedJob

from search.query import load_candidates
from search.store import Store

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


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Chromium is not installed (bash scripts/browser.sh installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(finished_job: FinishedJob) -> Iterator[str]:
    """``poolstride dashboard`` on a free port; yields its base address."""
    port = _free_port()
    server = subprocess.Popen(
        [*POOLSTRIDE, "dashboard", "--db", finished_job.url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                output = server.communicate(timeout=5)[0] if server.poll() is not None else ""
                pytest.fail(f"the dashboard did not come up on {base}: {output}")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: Streamlit and nothing else
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _chrome(chromium: str, profile: Path, *args: str) -> str:
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout


def test_pareto_page_in_chromium(served: str, finished_job: FinishedJob, tmp_path: Path) -> None:
    chromium = _chromium()
    page = f"{served}/pareto?job={finished_job.job_id}"
    # Chromium's virtual time runs ahead while the page only waits on its websocket, so the
    # first load of a cold server (Python imports, cache fills) can end before the charts
    # arrive: load again, up to a deadline, until they are there.
    shot = tmp_path / "pareto.png"
    deadline = time.monotonic() + 60
    for attempt in itertools.count():
        dom = _chrome(
            chromium,
            tmp_path / f"profile{attempt}",
            "--window-size=1400,1000",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--dump-dom",
            page,
        )
        if dom.count("js-plotly-plot") >= 2 or time.monotonic() > deadline:
            break
    with Store.open(finished_job.url) as store:
        complete = load_candidates(store, finished_job.job_id, where=["state=complete"])

    assert "Pareto front" in dom
    charts = re.findall(r'class="[^"]*\bjs-plotly-plot\b', dom)
    assert len(charts) == 2  # the candidates and the hypervolume curve
    # every complete candidate is one marker (an SVG path of class "point") of the scatter
    assert len(re.findall(r'<path class="point\b', dom)) == len(complete)
    assert "Hypervolume of (val_acc, flops) over trials" in dom
    assert "Traceback" not in dom and "stException" not in dom
    assert shot.stat().st_size > 10_000  # the screenshot of the rendered page, not a blank one
