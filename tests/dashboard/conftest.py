"""Fixtures of the dashboard tests: a finished job (a real tiny search, once per session), a
job in progress, a job with an ablation whose effects are planted (written, not trained), and
AppTest on the dashboard's entrypoint.

No ``__init__.py`` here: this folder's name would shadow the ``dashboard`` package.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import pytest
import streamlit as st
from _dashboard_support import (
    APP,
    PLANTED,
    PLANTED_BASE,
    PLANTED_NOISE,
    PLANTED_SKIPPED,
    FinishedJob,
    PlantedJob,
    RunningJob,
    poolstride,
)
from streamlit.testing.v1 import AppTest

from search.config import JobConfig
from search.cost import arch_cost
from search.space import ArchSpec
from search.store import DB_ENV_VAR, Store, upgrade
from search.vocabulary import Phase

# Cold page runs import plotly and pandas and fill the caches: generous, a hang still fails.
PAGE_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def finished_job(tmp_path_factory: pytest.TempPathFactory) -> FinishedJob:
    """A real search, run once per session: 8 candidates of 2 stages, 1 epoch, on digits, one
    seed each and no ablation (the search phase alone)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('finished') / 'poolstride.db'}"
    done = poolstride(
        "run",
        "--dataset",
        "digits",
        "--seeds",
        "1",
        "--ablate",
        "none",
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


def _two_stages(s1: str, s2: str) -> ArchSpec:
    return ArchSpec.from_dict(
        {
            "stages": [
                {"downsample": d, "kernel": 3, "skip": "none", "width": w}
                for d, w in ((s1, 8), (s2, 16))
            ]
        }
    )


@pytest.fixture(scope="session")
def planted_job(tmp_path_factory: pytest.TempPathFactory) -> PlantedJob:
    """A finished job of three seeds with a downsample ablation around trial 0, written as a
    worker writes it (search, confirm and ablate rows, curves, the plan) without training:
    strided at stage 2 costs 5 points, conv at stage 1 gains 2, nothing else changes
    more than the noise."""
    url = f"sqlite:///{tmp_path_factory.mktemp('planted') / 'poolstride.db'}"
    upgrade(url)
    config = JobConfig.from_mapping(
        {
            "dataset": "digits",
            "trials": 4,
            "epochs": 2,
            "seeds": 3,
            "ablate": "all",
            "space": {"stages": 2, "widths": [8, 16], "kernel": [3], "skip": ["none"]},
        }
    )
    # (phase, replicate, architecture, val_acc); trial numbers follow the list's order
    rows: list[tuple[Phase, int, ArchSpec, float]] = [
        ("search", 0, _two_stages("max", "max"), PLANTED_BASE[0]),
        ("search", 0, _two_stages("avg", "strided"), 0.80),
        ("search", 0, _two_stages("strided", "avg"), 0.82),
        ("search", 0, _two_stages("conv", "conv"), 0.70),
        ("confirm", 1, _two_stages("max", "max"), PLANTED_BASE[1]),
        ("confirm", 2, _two_stages("max", "max"), PLANTED_BASE[2]),
    ]
    for stage in (1, 2):
        for value in ("avg", "strided", "conv"):
            arch = _two_stages(value, "max") if stage == 1 else _two_stages("max", value)
            effect = PLANTED.get((stage, value), 0.0)
            rows += [
                ("ablate", k, arch, PLANTED_BASE[k] + effect + PLANTED_NOISE[k]) for k in range(3)
            ]
    with Store.open(url) as store:
        job = store.submit(config)
        worker = store.register_worker("planter")
        assert store.claim(worker, lease_seconds=600) is not None
        for trial, (phase, replicate, arch, val_acc) in enumerate(rows):
            cid = store.start_candidate(
                job_id=job.id,
                trial_number=trial,
                optuna_trial_id=None,
                arch=arch,
                cost=arch_cost(arch, input_shape=(1, 8, 8)),
                seed=100 + replicate,
                attempt=1,
                worker_id=worker,
                epochs_total=2,
                phase=phase,
                replicate=replicate,
                reference=0 if phase == "ablate" else None,
            )
            for epoch, acc in ((1, val_acc - 0.1), (2, val_acc)):
                store.record_epoch(
                    candidate_id=cid, epoch=epoch, val_acc=acc, train_loss=1.0, seconds=0.1
                )
            store.finish_candidate(
                candidate_id=cid,
                state="complete",
                val_acc=val_acc,
                test_acc=val_acc - 0.01,
                train_s=0.2,
                epochs_done=2,
            )
        store.record_plan(job.id, "confirm", {"total": 2})
        store.record_plan(
            job.id, "ablate", {"total": 18, "references": [0], "skipped": [PLANTED_SKIPPED]}
        )
        store.finish_job(job.id, worker, "succeeded")
    return PlantedJob(url, job.id, reference=0)


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
