"""Optuna's own CLI and API keep working on an upgraded database, and our tables survive them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from search.config import JobConfig
from search.store import Store, check_schema, normalize_url, optuna_storage


def test_optuna_cli_and_api_on_the_upgraded_database(
    db_url: str, row_counts: Callable[[str], dict[str, int]]
) -> None:
    with Store.open(db_url) as store:
        job = store.submit(JobConfig.from_mapping({"trials": 2, "epochs": 1}))

    study = optuna.create_study(
        study_name=job.study_name,
        storage=optuna_storage(db_url),
        directions=["maximize", "minimize"],
    )
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)

    optuna_cli = Path(sys.executable).with_name("optuna")
    done = subprocess.run(
        [str(optuna_cli), "studies", "--storage", normalize_url(db_url), "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert job.study_name in done.stdout

    # Optuna's compatibility check passes: its alembic_version is still its own.
    RDBStorage(normalize_url(db_url))
    assert (
        len(optuna.load_study(study_name=job.study_name, storage=optuna_storage(db_url)).trials)
        == 2
    )
    with Store.open(db_url) as store:
        check_schema(store.engine)
        assert store.get_job(job.id).study_name == job.study_name
    counts = row_counts(db_url)
    assert (counts["ps_jobs"], counts["studies"], counts["trials"]) == (1, 1, 2)


def test_optuna_commits_wait_for_no_disk_flush_under_wal(tmp_path: Path) -> None:
    # synchronous: 1 is NORMAL, 2 (SQLite's default) FULL, a flush per commit
    wal = f"sqlite:///{tmp_path}/wal.db"
    Store.open(wal, create=True).close()  # poolstride's schema puts the file in WAL
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    for url, expected in ((wal, 1), (f"sqlite:///{plain}", 2)):
        storage = optuna_storage(url)
        with storage.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected, url
        storage.engine.dispose()
