"""A PostgreSQL outage of a few seconds costs a worker nothing: no exit, no attempt, no noise.

Each test stops and restarts a private cluster (``pg_cluster``), never the shared server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import pytest
from _pgcluster import PgCluster
from optuna.trial import TrialState

from search.config import JobConfig
from search.store import JobInfo, Store, WorkerInfo, optuna_storage
from workers.daemon import Worker

pytestmark = pytest.mark.slow

POOLSTRIDE = str(Path(sys.executable).with_name("poolstride"))
OUTAGE_S = 6
TINY = JobConfig.from_mapping(
    {
        "dataset": "digits",
        "trials": 1,
        "epochs": 1,
        "sampler": "random",
        "batch_size": 64,
        "space": {"stages": 2, "widths": [4, 8]},
    }
)


def _wait_for(
    what: str, check: Callable[[], bool], worker: subprocess.Popen[bytes], timeout: float
) -> None:
    """Poll ``check()`` until it holds, failing if the worker ends first."""
    deadline = time.monotonic() + timeout
    while not check():
        assert worker.poll() is None, f"the worker exited ({worker.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_an_idle_worker_survives_a_database_outage(pg_cluster: PgCluster, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    store = Store.open(pg_cluster.url)

    def own_row() -> WorkerInfo | None:
        return next((w for w in store.list_workers() if w.pid == worker.pid), None)

    with log_path.open("wb") as log:
        # cwd: a server database keeps its weights in ./poolstride-artifacts
        worker = subprocess.Popen(
            [POOLSTRIDE, "worker", "--db", pg_cluster.url],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        # registered, and its idle loop has polled and heartbeaten once (Ray waits for a job)
        _wait_for(
            "its first idle poll",
            lambda: (row := own_row()) is not None and row.last_heartbeat > row.started_at,
            worker,
            timeout=120,
        )
        pg_cluster.outage(OUTAGE_S).join()
        restarted = datetime.now(timezone.utc)
        _wait_for(
            "a heartbeat after the outage",
            lambda: (row := own_row()) is not None and row.last_heartbeat > restarted,
            worker,
            timeout=30,
        )

        job = store.submit(TINY)
        _wait_for(
            "the job's end", lambda: store.get_job(job.id).finished_at is not None, worker, 180
        )
        assert store.get_job(job.id).status == "succeeded"
        assert worker.poll() is None
        text = log_path.read_text(errors="replace")
        unreachable = [line for line in text.splitlines() if "database unreachable" in line]
        assert len(unreachable) == 1, unreachable
        assert "database reachable again" in text
        assert "Traceback" not in text
        assert "invalid data in the commit" not in text

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        store.close()
        print(log_path.read_text(errors="replace"))  # pytest shows it when the test fails


def test_an_outage_at_job_start_is_not_an_attempt(
    pg_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLSTRIDE_ARTIFACTS", str(tmp_path))
    store = Store.open(pg_cluster.url)
    job = store.submit(TINY)
    worker = Worker(pg_cluster.url)
    claim = worker.store.claim
    outages = []

    def claim_then_outage(*args: Any, **kwargs: Any) -> JobInfo | None:
        # the claim has committed: the outage hits the job's start (storage, study, recovery)
        claimed = claim(*args, **kwargs)
        if claimed is not None:
            outages.append(pg_cluster.outage(OUTAGE_S))
        return claimed

    monkeypatch.setattr(worker.store, "claim", claim_then_outage)
    # job_id: a job another test left queued must not take this one's place
    [(job_id, outcome)] = worker.run(once=True, job_id=job.id)
    for outage in outages:
        outage.join()

    assert len(outages) == 1
    assert (job_id, outcome.status) == (job.id, "succeeded")
    after = store.get_job(job.id)
    assert (after.status, after.attempts) == ("succeeded", 1)
    study = optuna.load_study(study_name=job.study_name, storage=optuna_storage(pg_cluster.url))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert [c.state for c in store.list_candidates(job.id)] == ["complete"]
    store.close()
