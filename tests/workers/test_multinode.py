"""A real multi-process Ray cluster: a head and a node (separate ``ray start`` processes), two
``poolstride worker --ray-address`` processes and PostgreSQL; the node dies mid-job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _raycluster import RayCluster, RayNode
from optuna.trial import FrozenTrial, TrialState

from search.store import Store, optuna_storage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POOLSTRIDE = [sys.executable, "-m", "search.cli"]
TRIALS = 8
JOB = [
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--widths",
    "4,8",
    "--stages",
    "2",
    "--batch-size",
    "64",
    "--seeds",
    "1",
    "--ablate",
    "none",
    "--sampler",
    "random",
    # every candidate trains somewhere: a cache hit runs on no node
    "--no-cache",
    "--trials",
    str(TRIALS),
    # two jobs of two trials at once: the head runs one, the node the other three
    "--concurrency",
    "2",
    "--cpus-per-trial",
    "1",
    "--gpus-per-trial",
    "0.5",
]


@pytest.fixture
def cluster() -> Iterator[tuple[RayCluster, RayNode]]:
    # the GPUs are logical (the trials train on the CPU): room for two trials per declared GPU
    nodes, (_, node) = RayCluster.create([(1, 1), (3, 2)])
    try:
        yield nodes, node
    finally:
        nodes.close()


def _poolstride(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*POOLSTRIDE, *args], stdout=subprocess.PIPE, text=True)


def _json(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    data: dict = json.loads(out)
    return data


def _trials(storage: optuna.storages.BaseStorage, study: str) -> list[FrozenTrial]:
    """The study's trials; none before a worker created it."""
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def test_trials_spread_over_nodes_and_a_killed_node_costs_no_budget(cluster, pg_url, tmp_path):
    nodes, node = cluster
    # both at once, while the cluster comes up
    submits = [_poolstride("submit", *JOB, "--json", "--db", pg_url) for _ in range(2)]
    jobs = [_json(p) for p in submits]
    head, other = nodes.wait_alive(2, timeout_s=90)
    storage = optuna_storage(pg_url)
    worker = [*POOLSTRIDE, "worker", "--once", "--ray-address", nodes.address, "--db", pg_url]
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def logs() -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}" for _, log in workers)

    try:
        for i in range(2):
            log = tmp_path / f"worker{i}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    worker,
                    env={**os.environ, **nodes.env},  # the cluster's auth token
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            workers.append((process, log))

        deadline = time.monotonic() + 150
        while True:  # until a trial ran on the node: the others then run there too
            ran = [
                t.user_attrs.get("ray_node")
                for job in jobs
                for t in _trials(storage, job["study"])
                if t.state == TrialState.COMPLETE
            ]
            if other in ran:
                break
            # a worker may be done with its job; one must still be at work
            assert any(p.poll() is None for p, _ in workers), logs()
            assert all(p.poll() in (None, 0) for p, _ in workers), logs()
            assert time.monotonic() < deadline, f"no trial ran on the node\n{logs()}"
            time.sleep(0.5)
        assert len(ran) < 2 * TRIALS, "the jobs ended before the node could be killed"

        nodes.kill(node)
        assert nodes.wait_alive(1, timeout_s=30) == [head]

        for process, _ in workers:
            try:
                process.wait(timeout=150)
            except subprocess.TimeoutExpired:
                pytest.fail(f"a worker did not finish its job\n{logs()}")
            assert process.returncode == 0, logs()
    finally:
        for process, _ in workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    ran_on, lost = set(), 0
    with Store.open(pg_url, read_only=True) as store:
        for job in jobs:
            status = _json(_poolstride("status", str(job["id"]), "--json", "--db", pg_url))
            assert status["status"] == "succeeded", status
            assert status["trials_done"] == TRIALS
            trials = _trials(storage, job["study"])
            assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            # exactly the budget, each trial once, in Optuna and in poolstride's rows alike
            assert len(complete) == TRIALS
            rows = [c for c in store.list_candidates(job["id"]) if c.state == "complete"]
            assert sorted(c.trial_number for c in rows) == sorted(t.number for t in complete)
            ran_on |= {t.user_attrs["ray_node"] for t in complete}
            # the trials the node took down, told FAIL once Ray declared it dead, were replaced
            # by trials that only the head could run
            failed = [t for t in trials if t.state == TrialState.FAIL]
            assert all(t.user_attrs["error"] == "the trial process died" for t in failed)
            if failed:
                dead = min(t.datetime_complete for t in failed)
                after = [t for t in complete if t.datetime_start > dead]
                assert after and {t.user_attrs["ray_node"] for t in after} == {head}
            lost += len(failed)
    assert ran_on == {head, other}
    assert lost, "the node died with no trial running on it"


def test_a_worker_told_a_dead_address_stops_at_once_and_fails_no_job(pg_url):
    job = _json(_poolstride("submit", *JOB, "--json", "--db", pg_url))
    with socket.socket() as probe:  # a port nothing listens at
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    done = subprocess.run(
        [*POOLSTRIDE, "worker", "--once", "--ray-address", address, "--db", pg_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        f"poolstride: error: no Ray cluster answers at {address}"
    )
    status = _json(_poolstride("status", str(job["id"]), "--json", "--db", pg_url))
    assert status["status"] == "queued" and status["attempts"] == 0
