"""Shared fixtures: fresh databases on SQLite and on the local PostgreSQL server.

``db_url`` (and ``store``) run a test once per backend on a database that has the current schema
(poolstride's and Optuna's tables); ``empty_db_url`` gives a database with no tables at all.
PostgreSQL databases are cloned from a template upgraded once per session and dropped after
each test. Where the server cannot be reached the PostgreSQL cases are skipped, except under
``CI`` where that is a failure. ``POOLSTRIDE_TEST_PG`` names another server (any database on it).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from _pgcluster import PgCluster, find_bindir
from sqlalchemy import inspect, text

from search.store import Store, make_engine, upgrade

PG_URL = os.environ.get("POOLSTRIDE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


class PgServer:
    """Creates and drops throwaway databases on one PostgreSQL server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
        self.prefix = f"ps_test_{os.getpid()}_{secrets.token_hex(2)}"
        self.created: list[str] = []

    def url_of(self, name: str) -> str:
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{name}"

    def create(self, *, template: str | None = None) -> str:
        name = f"{self.prefix}_{len(self.created)}"
        clause = f" TEMPLATE {template}" if template else ""
        self.admin.execute(f"CREATE DATABASE {name}{clause}")
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(name)
        self.admin.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = PgServer(PG_URL)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_URL} is unreachable: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    yield server
    server.close()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    name = pg_server.create()
    upgrade(pg_server.url_of(name))
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with the current schema, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "poolstride.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = server.create(template=request.getfixturevalue("pg_template"))
    yield server.url_of(name)
    server.drop(name)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no tables, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = server.create()
    yield server.url_of(name)
    server.drop(name)


@pytest.fixture
def pg_url(pg_server: PgServer, pg_template: str) -> Iterator[str]:
    """A fresh upgraded PostgreSQL database (for PostgreSQL-only tests)."""
    name = pg_server.create(template=pg_template)
    yield pg_server.url_of(name)
    pg_server.drop(name)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


@pytest.fixture
def row_counts() -> Callable[[str], dict[str, int]]:
    """``row_counts(url)``: rows per table, poolstride's and Optuna's alike."""

    def count(url: str) -> dict[str, int]:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                return {
                    t: conn.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one()
                    for t in sorted(inspect(conn).get_table_names())
                }
        finally:
            engine.dispose()

    return count


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster with the current schema, for tests that stop and start it."""
    if find_bindir() is None:
        message = "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = PgCluster.create()
    try:
        upgrade(cluster.url)
        yield cluster
    finally:
        cluster.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``scripts/test.sh`` runs two processes, ``--dist loadgroup``): the
    tests that start Ray or train share one process, one after another, as they always ran;
    every other file goes whole to whichever process is free, beside them. Two Ray runs at
    once on two cores would make the lease and timeout tests race the clock."""
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path))
        heavy = item.get_closest_marker("slow") is not None or path.is_relative_to(
            root / "tests" / "workers"
        )
        group = "ray" if heavy else str(path.relative_to(root))
        item.add_marker(pytest.mark.xdist_group(group))
