"""The dashboard in a real browser: ``poolstride dashboard`` served, headless Chromium loads it.

Skipped only where Chromium is not installed and ``CI`` is unset; under CI a missing Chromium
fails (``scripts/browser.sh`` installs it): :func:`_dashboard_support.find_chromium`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _dashboard_support import POOLSTRIDE, FinishedJob, chrome, find_chromium

from search.query import load_candidates
from search.store import Store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A running ``poolstride dashboard``: its base address and the file its output goes to."""

    base: str
    log: Path


@pytest.fixture
def served(finished_job: FinishedJob, tmp_path: Path) -> Iterator[Served]:
    """``poolstride dashboard`` on a free port, started as a user starts it."""
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*POOLSTRIDE, "dashboard", "--db", finished_job.url, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
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
                pytest.fail(f"the dashboard did not come up on {base}: {log.read_text()}")
            time.sleep(0.2)
        yield Served(base, log)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: Streamlit and nothing else
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _load(page: str, tmp_path: Path, done: Callable[[str], bool], shot: Path | None = None) -> str:
    """The DOM of ``page`` once ``done`` says it is drawn, or the last one after a minute.

    Chromium's virtual time runs ahead while the page only waits on its websocket, so one load
    can end before the server's answer arrives, however warm the server: load again, up to a
    deadline, until the page is there.
    """
    chromium = find_chromium()
    screenshot = [f"--screenshot={shot}"] if shot else []
    deadline = time.monotonic() + 60
    attempt = 0
    while True:
        attempt += 1
        dom = chrome(
            chromium,
            tmp_path / f"profile{attempt}",
            "--window-size=1400,1000",
            "--hide-scrollbars",
            *screenshot,
            "--dump-dom",
            page,
        )
        if done(dom) or time.monotonic() > deadline:
            return dom


def test_pareto_page_in_chromium(served: Served, finished_job: FinishedJob, tmp_path: Path) -> None:
    shot = tmp_path / "pareto.png"
    dom = _load(
        f"{served.base}/pareto?job={finished_job.job_id}",
        tmp_path,
        lambda d: d.count("js-plotly-plot") >= 2,
        shot,
    )
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


def test_the_server_warms_up_before_it_serves(
    served: Served, finished_job: FinishedJob, tmp_path: Path
) -> None:
    # dashboard.serve writes this line before Streamlit starts: a server that answers has it
    warmed = re.findall(
        r"^dashboard warmed in [0-9.]+ s \(code [0-9.]+ s, database: [0-9.]+ s\)$",
        served.log.read_text(),
        re.MULTILINE,
    )
    assert len(warmed) == 1, served.log.read_text()
    with Store.open(finished_job.url) as store:
        job = store.get_job(finished_job.job_id)
    dom = _load(f"{served.base}/", tmp_path, lambda d: 'data-testid="stDataFrame"' in d)
    assert "Jobs" in dom and "Workers" in dom
    assert job.name in dom and job.status in dom  # the job table's row
    assert "Traceback" not in dom and "stException" not in dom
