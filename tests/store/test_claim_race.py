"""Eight processes claim from one queue at once: every job is claimed exactly once."""

from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path

import pytest
from _claimer import claim_all

from search.config import JobConfig
from search.store import Store

WORKERS = 8
JOBS = 20


def _race(url: str) -> dict[str, list[int]]:
    with Store.open(url) as store:
        for i in range(JOBS):
            store.submit(JobConfig.from_mapping({"trials": 1, "epochs": 1, "priority": i % 3}))
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [
        ctx.Process(target=claim_all, args=(url, f"w{i}", barrier, out)) for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_every_job_is_claimed_exactly_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        path = tmp_path / "race.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    results = _race(url)
    claimed = [job for jobs in results.values() for job in jobs]
    assert sorted(claimed) == list(range(1, JOBS + 1))
    with Store.open(url) as store:
        jobs = store.list_jobs()
    assert all(j.status == "succeeded" and j.attempts == 1 for j in jobs)
    owner = {job: worker for worker, ids in results.items() for job in ids}
    assert all(j.worker_id == owner[j.id] for j in jobs)
