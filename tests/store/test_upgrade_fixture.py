"""An existing user's database upgrades with every row intact (the Optuna way).

``data/upgrade_0001.db`` is a database at schema 0001 with known rows, made by
``scripts/make_upgrade_fixture.py``; each test works on a copy.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import optuna
import pytest
from optuna.trial import TrialState

from search.datasets import DatasetFacts
from search.query import load_candidates
from search.store import (
    SchemaError,
    Store,
    current_revision,
    epochs_frame,
    head_revision,
    make_engine,
    optuna_storage,
    upgrade,
)
from search.store._schema import VERSION_TABLE

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "data" / "upgrade_0001.db"
SCRIPT = ROOT / "scripts" / "make_upgrade_fixture.py"
T0 = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
PS_TABLES = ("ps_jobs", "ps_workers", "ps_candidates", "ps_stages", "ps_epochs")


@pytest.fixture
def old_url(tmp_path: Path) -> str:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, path)
    return f"sqlite:///{path}"


def test_the_fixture_is_at_0001_and_refused_until_upgraded(old_url: str) -> None:
    engine = make_engine(old_url)
    assert current_revision(engine) == "0001"
    engine.dispose()
    with pytest.raises(SchemaError, match="at revision 0001, poolstride needs"):
        Store.open(old_url)


def test_the_fixture_has_exactly_the_schema_that_0001_makes(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    assert upgrade(f"sqlite:///{fresh}", "0001") == "0001"
    made = _master(fresh)
    assert {name for kind, name, _, _ in made if kind == "table"} == {
        *PS_TABLES,
        VERSION_TABLE,
        "alembic_version",
    }
    assert _master(FIXTURE) == made


def test_upgrade_keeps_every_row(old_url: str, row_counts: Callable[[str], dict[str, int]]) -> None:
    path = Path(old_url.removeprefix("sqlite:///"))
    before_counts = row_counts(old_url)
    assert {t: before_counts[t] for t in PS_TABLES} == {
        "ps_jobs": 2,
        "ps_workers": 1,
        "ps_candidates": 3,
        "ps_stages": 6,
        "ps_epochs": 5,
    }
    assert (before_counts["studies"], before_counts["trials"]) == (1, 3)
    before = _dump(path)

    assert upgrade(old_url) == head_revision()
    assert {t: row_counts(old_url)[t] for t in before_counts} == before_counts  # Optuna's too
    after = _dump(path)
    added = {t: [c for c in after[t].columns if c not in before[t].columns] for t in PS_TABLES}
    # 0002's to 0005's columns; a later migration that adds one to a table extends this
    assert {t: columns for t, columns in added.items() if columns} == {
        "ps_jobs": ["dataset_facts", "plan"],
        "ps_workers": ["lease_seconds"],
        "ps_candidates": [
            "phase",
            "cached_from",
            "replicate",
            "reference",
            "cache_key",
            "latency_rel",
            "gpu_share",
            "stopped_at",
        ],
    }
    # every row, every value, as it was, the new columns NULL in them but for those with a
    # default: every candidate before 0004 was the search phase's first seed
    defaults = {"phase": "search", "replicate": 0}
    assert {t: dump.rows for t, dump in after.items()} == {
        t: [{**row, **{c: defaults.get(c) for c in added[t]}} for row in dump.rows]
        for t, dump in before.items()
    }

    with Store.open(old_url) as store:
        job = store.get_job(1)
        assert (job.name, job.status, job.study_name, job.worker_id) == (
            "fixture",
            "succeeded",
            "poolstride-job-1",
            "host-1-abcdef",
        )
        assert (job.trials_done, job.trials_total, job.attempts, job.max_attempts) == (2, 3, 1, 3)
        assert (job.created_at, job.finished_at) == (T0, T0)
        assert (job.config.dataset, job.config.trials, job.config.train.epochs) == ("digits", 3, 2)
        assert [st.width for st in job.config.space.stages] == [(8,), (16,)]
        assert job.dataset_facts is None  # 0002's column: nothing known before it existed
        assert [(j.id, j.status, j.priority) for j in store.list_jobs()] == [
            (1, "succeeded", 0),
            (2, "queued", 5),
        ]

        rows = store.list_candidates(1)
        assert [(c.trial_number, c.optuna_trial_id, c.state, c.val_acc) for c in rows] == [
            (0, 1, "complete", 0.81),
            (1, 2, "complete", 0.875),
            (2, 3, "failed", None),
        ]
        assert (rows[1].flops, rows[1].params, rows[1].arch_hash) == (
            384320,
            19730,
            "af95a22c7eb5e114",
        )
        assert rows[2].error == "RuntimeError: boom" and rows[0].started_at == T0
        frame = load_candidates(store, 1, where=["s2.downsample=conv"])
        assert frame[["trial", "s1.skip", "s2.kernel"]].values.tolist() == [[1, "pool", 7]]
        curves = epochs_frame(store, 1)
        assert curves[["trial_number", "epoch", "val_acc"]].values.tolist() == [
            [0, 1, 0.7],
            [0, 2, 0.81],
            [1, 1, 0.75],
            [1, 2, 0.875],
            [2, 1, 0.25],
        ]
        (worker,) = store.list_workers()
        assert (worker.id, worker.status, worker.last_heartbeat) == ("host-1-abcdef", "stopped", T0)
        assert worker.lease_seconds is None  # 0003's column
        # 0004's: the old job is one plain search, its candidates its first seed
        assert [(c.phase, c.replicate, c.cached_from) for c in rows] == [("search", 0, None)] * 3
        assert (job.trained, job.cached, job.plan) == (2, 0, None)
        assert [p.name for p in job.phases] == ["search"]

        facts = DatasetFacts(10, (1, 8, 8), (4.9,), (6.0,))
        store.record_dataset(1, facts)
        assert store.get_job(1).dataset_facts == facts

    study = optuna.load_study(study_name="poolstride-job-1", storage=optuna_storage(old_url))
    assert [(t.state, t.values) for t in study.trials] == [
        (TrialState.COMPLETE, [0.81, 109888.0]),
        (TrialState.COMPLETE, [0.875, 384320.0]),
        (TrialState.FAIL, None),
    ]
    assert study.trials[1].params == {
        "s1.downsample": "avg",
        "s1.kernel": 3,
        "s2.downsample": "conv",
        "s2.kernel": 7,
    }


class _Table(NamedTuple):
    columns: list[str]
    rows: list[dict[str, object]]


def _dump(path: Path) -> dict[str, _Table]:
    """Every row of poolstride's tables, column by column, in primary-key order."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        out = {}
        for table in PS_TABLES:
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            key = ", ".join(c["name"] for c in sorted(info, key=lambda c: c["pk"]) if c["pk"])
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            out[table] = _Table([c["name"] for c in info], [dict(r) for r in rows])
        return out
    finally:
        conn.close()


def _master(path: Path) -> list[tuple[str, str, str, str | None]]:
    """The ``sqlite_master`` rows of poolstride's tables, their indexes and both version
    tables: the schema as SQLite keeps it, ``CREATE`` statements included."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE tbl_name LIKE 'ps\\_%' ESCAPE '\\' OR tbl_name = 'alembic_version'"
            " ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()


def test_the_script_still_makes_the_checked_in_rows(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(fresh)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _dump(fresh) == _dump(FIXTURE)
    assert not fresh.with_name("fresh.db-wal").exists()
