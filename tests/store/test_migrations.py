"""Migrations: one head, reversible with rows present, equal to the models, own version table."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from search.config import JobConfig
from search.cost import Cost
from search.datasets import DatasetFacts
from search.space import ArchSpec
from search.store import (
    DatabaseError,
    SchemaError,
    Store,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    optuna_storage,
    upgrade,
)
from search.store._models import Base
from search.store._schema import MIGRATIONS_DIR, VERSION_TABLE, alembic_config, include_name

ROOT = Path(__file__).resolve().parents[2]
PS_TABLES = {"ps_jobs", "ps_workers", "ps_candidates", "ps_stages", "ps_epochs"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_a_single_linear_history_from_0001() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [head_revision()]
    revisions = list(reversed(list(script.walk_revisions())))  # oldest first
    chain = [rev.revision for rev in revisions]
    # numbered 0001, 0002, ... with no gap, each revising the one before it (no branches, no
    # merges), the last being the head
    assert chain == [f"{i:04d}" for i in range(1, len(chain) + 1)]
    assert [rev.down_revision for rev in revisions] == [None, *chain[:-1]]
    assert chain[-1] == head_revision()
    # each file named after its revision
    names = sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("*.py"))
    assert names == chain


def test_upgrade_creates_both_schemas_with_separate_version_tables(empty_db_url: str) -> None:
    assert upgrade(empty_db_url) == head_revision()
    tables = _tables(empty_db_url)
    assert PS_TABLES | {VERSION_TABLE, "alembic_version", "studies", "trials"} <= tables
    engine = make_engine(empty_db_url)
    with engine.connect() as conn:
        optuna_rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert optuna_rev == optuna_storage(empty_db_url).get_head_version()
    assert upgrade(empty_db_url) == head_revision()  # again: nothing to do


def test_models_equal_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": include_name,
                "compare_type": True,
                "version_table": VERSION_TABLE,
            },
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_alembic_check_from_the_repository_root(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'check.db'}"
    upgrade(url)
    alembic = Path(sys.executable).with_name("alembic")
    done = subprocess.run(
        [str(alembic), "-x", f"db={url}", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr


def _columns(url: str, table: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [c["name"] for c in inspect(conn).get_columns(table)]
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_with_rows_present(
    empty_db_url: str, row_counts: Callable[[str], dict[str, int]]
) -> None:
    upgrade(empty_db_url)
    optuna.create_study(study_name="kept", storage=optuna_storage(empty_db_url))
    arch = ArchSpec.from_dict({"stages": [{"downsample": "max", "kernel": 3, "skip": "none"}]})
    with Store.open(empty_db_url) as store:
        for _ in range(3):
            store.submit(JobConfig.from_mapping({"trials": 2, "epochs": 1}))
        store.claim("w", 60)
        store.register_worker("w")
        store.record_dataset(1, DatasetFacts(10, (1, 28, 28), (33.3,), (78.6,)))
        cid = store.start_candidate(
            job_id=1,
            trial_number=0,
            optuna_trial_id=None,
            arch=arch,
            cost=Cost(params=1, flops=2, activation_bytes=3, receptive_field=4),
            seed=0,
            attempt=1,
            worker_id="w",
            epochs_total=1,
        )
        store.record_epoch(candidate_id=cid, epoch=1, val_acc=0.5, train_loss=1.0, seconds=0.1)
    counts = row_counts(empty_db_url)
    ours = {t: counts[t] for t in PS_TABLES}
    assert ours == {
        "ps_jobs": 3,
        "ps_workers": 1,
        "ps_candidates": 1,
        "ps_stages": 1,
        "ps_epochs": 1,
    }

    # 0002 -> 0001: the facts' column goes, every row stays (no table copy cascades deletes)
    assert downgrade(empty_db_url, "0001") == "0001"
    assert "dataset_facts" not in _columns(empty_db_url, "ps_jobs")
    assert {t: row_counts(empty_db_url)[t] for t in PS_TABLES} == ours
    assert upgrade(empty_db_url) == head_revision()
    assert {t: row_counts(empty_db_url)[t] for t in PS_TABLES} == ours
    with Store.open(empty_db_url) as store:
        job = store.get_job(1)
        assert (job.status, job.worker_id, job.dataset_facts) == ("running", "w", None)
        assert [c.val_acc for c in store.list_candidates(1)] == [0.5]

    assert downgrade(empty_db_url, "base") is None
    assert not (_tables(empty_db_url) & PS_TABLES)
    assert row_counts(empty_db_url)["studies"] == 1  # Optuna's rows are not ours to drop

    assert upgrade(empty_db_url) == head_revision()
    with Store.open(empty_db_url) as store:
        job = store.submit(JobConfig.from_mapping({"trials": 2, "epochs": 1}))
        assert [j.id for j in store.list_jobs()] == [job.id]
    assert optuna.load_study(study_name="kept", storage=optuna_storage(empty_db_url))


def test_out_of_date_or_unknown_schemas_are_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    check_schema(engine)
    downgrade(db_url, "base")
    with pytest.raises(SchemaError, match="run `poolstride db upgrade`"):
        check_schema(engine)
    upgrade(db_url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff'"))
    with pytest.raises(SchemaError, match="does not know"):
        check_schema(engine)
    assert current_revision(engine) == "ffff"
    engine.dispose()


def test_0004_keeps_every_row_and_old_rows_read_as_the_search_phase(
    empty_db_url: str, row_counts: Callable[[str], dict[str, int]]
) -> None:
    upgrade(empty_db_url)
    arch = ArchSpec.from_dict({"stages": [{"downsample": "max", "kernel": 3, "skip": "none"}]})
    cost = Cost(params=1, flops=2, activation_bytes=3, receptive_field=4)
    with Store.open(empty_db_url) as store:
        job = store.submit(JobConfig.from_mapping({"trials": 2, "epochs": 1, "seeds": 2}))
        ids = [
            store.start_candidate(
                job_id=job.id,
                trial_number=n,
                optuna_trial_id=None,
                arch=arch,
                cost=cost,
                seed=0,
                attempt=1,
                worker_id="w",
                epochs_total=1,
                **extra,
            )
            for n, extra in enumerate(
                [{"cache_key": "k" * 32}, {"phase": "confirm", "replicate": 1}]
            )
        ]
        store.record_epoch(candidate_id=ids[0], epoch=1, val_acc=0.5, train_loss=1.0, seconds=0.1)
        store.finish_candidate(candidate_id=ids[0], state="complete", val_acc=0.5)
        store.start_candidate(
            job_id=job.id,
            trial_number=2,
            optuna_trial_id=None,
            arch=arch,
            cost=cost,
            seed=0,
            attempt=1,
            worker_id="w",
            epochs_total=1,
            phase="ablate",
            reference=0,
            cache_key="k" * 32,
            cached_from=ids[0],
        )
        store.record_plan(job.id, "confirm", {"total": 1})
    ours = {t: row_counts(empty_db_url)[t] for t in PS_TABLES}
    assert (ours["ps_candidates"], ours["ps_epochs"]) == (3, 2)  # the copy has its curve

    assert downgrade(empty_db_url, "0003") == "0003"
    gone = {"phase", "replicate", "reference", "cached_from", "cache_key"}
    assert not gone & set(_columns(empty_db_url, "ps_candidates"))
    assert "plan" not in _columns(empty_db_url, "ps_jobs")
    assert {t: row_counts(empty_db_url)[t] for t in PS_TABLES} == ours

    assert upgrade(empty_db_url) == head_revision()
    assert {t: row_counts(empty_db_url)[t] for t in PS_TABLES} == ours
    with Store.open(empty_db_url) as store:
        rows = store.list_candidates(job.id)
        assert [(c.phase, c.replicate, c.reference, c.cached_from) for c in rows] == [
            ("search", 0, None, None)
        ] * 3
        assert store.get_job(job.id).plan is None
        # the new columns work again on the upgraded schema
        store.start_candidate(
            job_id=job.id,
            trial_number=3,
            optuna_trial_id=None,
            arch=arch,
            cost=cost,
            seed=0,
            attempt=1,
            worker_id="w",
            epochs_total=1,
            phase="ablate",
            reference=0,
            cached_from=ids[0],
        )
        assert store.list_candidates(job.id)[-1].cached_from == ids[0]
        # the phase is checked by the database too
        with pytest.raises(DatabaseError), store.session() as s:
            s.execute(text("UPDATE ps_candidates SET phase = 'explore'"))
