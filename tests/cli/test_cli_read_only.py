"""Every command that only reads leaves a SQLite file exactly as it found it.

The file is put in rollback-journal mode (``DELETE``) first: a command that opened it as a
writer would switch it to WAL, change its bytes and leave ``-wal``/``-shm`` files beside it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from _cli import run
from _known import fill

from search.store import Store

READERS = [
    ("jobs",),
    ("status", "1"),
    ("pareto", "1"),
    ("trials", "1", "--where", "s1.kernel=3"),
    ("analyze", "1"),
    ("workers", "--all"),
    ("db", "current"),
]


def _state(path: Path) -> tuple[str, str, list[str]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, mode, sorted(p.name for p in path.parent.iterdir())


@pytest.fixture(scope="module")
def journal_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("journal") / "ps.db"
    with Store.open(f"sqlite:///{path}", create=True) as store:
        assert fill(store) == 1
        store.register_worker("w", lease_seconds=60)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    return path


@pytest.mark.parametrize("args", READERS, ids=[" ".join(a) for a in READERS])
def test_a_read_only_command_leaves_the_file_as_it_is(
    journal_db: Path, args: tuple[str, ...]
) -> None:
    before = _state(journal_db)
    assert before[1:] == ("delete", ["ps.db"])
    result = run(*args, "--db", f"sqlite:///{journal_db}")
    assert result.code == 0, result
    assert result.stdout  # it did read something
    assert _state(journal_db) == before
