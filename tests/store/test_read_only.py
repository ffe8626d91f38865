"""A read-only store changes nothing in the database, and every write through it fails.

SQLite: the file is opened with ``mode=ro``, so its bytes, its journal mode and its folder stay
as they were (no switch to WAL, no ``-wal``/``-shm``/``-journal`` file). PostgreSQL: the live
server runs every transaction of the store read-only.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from search.config import JobConfig
from search.store import DatabaseError, DatabaseUnavailableError, Store

CONFIG = JobConfig.from_mapping({"trials": 2, "epochs": 1})


def _journal_mode(path: Path) -> str:
    # mode=ro: asking must not change what is asked about
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


def _file_state(path: Path) -> tuple[str, str, list[str]]:
    """The file's hash, its journal mode and what its folder holds."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, _journal_mode(path), sorted(p.name for p in path.parent.iterdir())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_read_only_store_leaves_a_rollback_journal_file_as_it_is(db_url: str) -> None:
    with Store.open(db_url) as store:
        job = store.submit(CONFIG)
    path = Path(str(make_url(db_url).database))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    before = _file_state(path)
    assert before[1:] == ("delete", [path.name])

    with Store.open(db_url, read_only=True) as store:
        assert [j.id for j in store.list_jobs()] == [job.id]
        assert store.get_job(job.id).study_name == job.study_name
        assert store.list_workers() == []
        assert _file_state(path) == before  # with its connections still open
    assert _file_state(path) == before

    # WAL is for where poolstride writes
    with Store.open(db_url) as store:
        store.submit(CONFIG)
    assert _journal_mode(path) == "wal"


def test_a_write_through_a_read_only_store_fails(db_url: str) -> None:
    with Store.open(db_url) as store:
        job = store.submit(CONFIG)
    with Store.open(db_url, read_only=True) as store:
        assert [j.id for j in store.list_jobs()] == [job.id]
        with pytest.raises(DatabaseError, match=r"(?i)read.?only") as caught:
            store.submit(CONFIG)
        # refused for good: not an outage that retrying would wait out
        assert not isinstance(caught.value, DatabaseUnavailableError)
        with pytest.raises(DatabaseError, match=r"(?i)read.?only"), store.session() as s:
            s.execute(text("DELETE FROM ps_jobs"))
    with Store.open(db_url) as store:
        assert [j.id for j in store.list_jobs()] == [job.id]


def test_every_postgresql_connection_of_a_read_only_store_is_read_only(pg_url: str) -> None:
    with Store.open(pg_url, read_only=True) as store:
        for _ in range(2):  # a fresh connection after the pool was emptied, too
            with store.session() as s:
                assert s.scalar(text("SHOW transaction_read_only")) == "on"
                assert s.scalar(text("SELECT COUNT(*) FROM ps_jobs")) == 0
            store.engine.dispose()
    with Store.open(pg_url) as store, store.session() as s:
        assert s.scalar(text("SHOW transaction_read_only")) == "off"
