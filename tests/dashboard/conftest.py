"""Fixtures of the dashboard tests: a finished job (a real tiny search, once per session), a
job in progress, and AppTest on the dashboard's entrypoint.

No ``__init__.py`` here: this folder's name would shadow the ``dashboard`` package.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import pytest
import streamlit as st
from _dashboard_support import APP, FinishedJob, RunningJob, poolstride
from streamlit.testing.v1 import AppTest

from search.config import JobConfig
from search.cost import arch_cost
from search.store import DB_ENV_VAR, Store

# Cold page runs import plotly and pandas and fill the caches: generous, a hang still fails.
PAGE_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def finished_job(tmp_path_factory: pytest.TempPathFactory) -> FinishedJob:
    """A real search, run once per session: 8 candidates of 2 stages, 1 epoch, on digits."""
    url = f"sqlite:///{tmp_path_factory.mktemp('finished') / 'poolstride.db'}"
    done = poolstride(
        "run",
        "--dataset",
        "digits",
        "--trials",
        "8",
        "--epochs",
        "1",
        "--widths",
        "8,16",
        "--stages",
        "2",
        "--concurrency",
        "4",
        "--json",
        "--db",
        url,
    )
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded", done.stderr
    return FinishedJob(url, int(job["id"]))


@pytest.fixture
def running_job(db_url: str) -> RunningJob:
    """Job of 6 trials, 3 complete, 1 training, held by worker ``fake-worker``; no Ray."""
    config = JobConfig.from_mapping(
        {"dataset": "digits", "trials": 6, "epochs": 2, "space": {"stages": 2, "widths": [8, 16]}}
    )
    worker = "fake-worker"
    with Store.open(db_url) as store:
        job = store.submit(config)
        store.register_worker(worker, lease_seconds=600)
        assert store.claim(worker, lease_seconds=600) is not None  # the worker's row: busy
        for trial, arch in enumerate(itertools.islice(config.space, 4)):
            cid = store.start_candidate(
                job_id=job.id,
                trial_number=trial,
                optuna_trial_id=None,
                arch=arch,
                cost=arch_cost(arch, input_shape=config.space.input_shape),
                seed=0,
                attempt=1,
                worker_id=worker,
                epochs_total=2,
            )
            if trial < 3:
                store.record_epoch(
                    candidate_id=cid, epoch=1, val_acc=0.5 + trial / 10, train_loss=1.0, seconds=0.1
                )
                store.finish_candidate(candidate_id=cid, state="complete", train_s=0.2)
    return RunningJob(db_url, job.id, 3, 6, worker)


@pytest.fixture
def open_page(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """``open_page(url, "pareto.py", job=1, ...)``: AppTest of the app on that page.

    The database reaches the app as it does under ``poolstride dashboard``: through
    ``$POOLSTRIDE_DB``. Keyword arguments become query parameters.
    """

    def open_(url: str, view: str | None = None, **params: object) -> AppTest:
        monkeypatch.setenv(DB_ENV_VAR, url)
        # Test databases reuse URLs (PostgreSQL names are recycled): start from empty caches.
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(APP, default_timeout=PAGE_TIMEOUT_S)
        at.run()
        if view is not None:
            at.switch_page(f"views/{view}")
        for key, value in params.items():
            at.query_params[key] = str(value)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_


@pytest.fixture(autouse=True)
def _no_stray_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own $POOLSTRIDE_DB must never be what a test reads.
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
