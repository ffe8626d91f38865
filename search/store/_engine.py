"""Database URLs, engines and the clock: the one place that knows SQLite from PostgreSQL."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from collections.abc import Callable
    from sqlite3 import Connection as SQLiteConnection

    from optuna.storages import RDBStorage
    from sqlalchemy.engine import Connection, Dialect
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_ENV_VAR",
    "DEFAULT_DB_URL",
    "display_url",
    "make_engine",
    "missing_sqlite_file",
    "normalize_url",
    "optuna_storage",
    "resolve_db_url",
]

DEFAULT_DB_URL = "sqlite:///poolstride.db"
DB_ENV_VAR = "POOLSTRIDE_DB"
# Measured: with a 1 ms timeout a concurrent writer aborted Optuna's commits; 30 s never did.
BUSY_TIMEOUT_S = 30.0

_IMMEDIATE = "poolstride_sqlite_immediate"
# What SQLite connections set. Only a writer's set the journal mode: that is a property of the
# file, which a reader must leave as it found it (and foreign keys only matter to writes).
_SQLITE_READ_PRAGMAS = (f"busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}",)
_SQLITE_WRITE_PRAGMAS = (
    *_SQLITE_READ_PRAGMAS,
    "journal_mode = WAL",
    "synchronous = NORMAL",  # durable enough under WAL, and faster
    "foreign_keys = ON",
)
# libpq's startup options apply before any statement, pooled reconnects included.
_PG_READ_ONLY = "-c default_transaction_read_only=on"


def resolve_db_url(cli_value: str | None) -> str:
    """The database URL: ``--db``, else ``$POOLSTRIDE_DB``, else ``poolstride.db`` here.

    Example:
        >>> resolve_db_url("sqlite:///x.db")
        'sqlite:///x.db'
    """
    if cli_value:
        return cli_value
    return os.environ.get(DB_ENV_VAR) or DEFAULT_DB_URL


def normalize_url(url: str) -> str:
    """Validate ``url`` and make PostgreSQL URLs use psycopg 3.

    Raises:
        ValueError: the URL does not parse, names a database other than SQLite/PostgreSQL, or
            is a SQLite URL with a host, port or user (``sqlite://tmp/x.db``: SQLite would
            open ``x.db`` here); the message says what to write instead.

    Example:
        >>> normalize_url("postgresql://u@localhost/db")
        'postgresql+psycopg://u@localhost/db'
        >>> normalize_url("sqlite://tmp/x.db")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: database URL 'sqlite://tmp/x.db' names host 'tmp', ...: write sqlite:///tmp/x.db...
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    if backend == "sqlite":
        _refuse_sqlite_authority(url, parsed)
        return url
    raise ValueError(
        f"database URL {display_url(url)!r}: only sqlite:/// and postgresql:// are supported"
    )


def display_url(url: str | URL) -> str:
    """``url`` with any password masked, for messages.

    Example:
        >>> display_url("postgresql+psycopg://me:secret@db/poolstride")
        'postgresql+psycopg://me:***@db/poolstride'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def make_engine(url: str, *, read_only: bool = False, **kwargs: Any) -> Engine:
    """An engine for poolstride's tables (and the schema tools) on ``url``.

    SQLite: WAL, a 30 s busy timeout and foreign keys on every connection; SQLAlchemy (not the
    sqlite3 module) emits ``BEGIN``, so that write transactions can take the lock up front with
    ``BEGIN IMMEDIATE`` (see :func:`write_engine`). PostgreSQL: psycopg 3. Both check a pooled
    connection before handing it out, since trainings leave connections idle for long.

    ``read_only``: every write fails and opening changes nothing. SQLite opens the file with
    ``mode=ro`` (no switch to WAL, no file created where none is); PostgreSQL runs every
    transaction read-only (``default_transaction_read_only``). ``engine.url`` stays ``url``.

    Example:
        >>> engine = make_engine("sqlite://", read_only=True)
        >>> with engine.connect() as conn:
        ...     conn.exec_driver_sql("CREATE TABLE t (x)")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        sqlalchemy.exc.OperationalError: ...attempt to write a readonly database...
    """
    url = normalize_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True, **kwargs}
    connect_args: dict[str, Any] = options.setdefault("connect_args", {})
    if _parse(url).get_backend_name() != "sqlite":
        if read_only:  # added to the URL's own ?options=, which connect_args would replace
            own = _parse(url).query.get("options", ())
            connect_args["options"] = " ".join(
                [*([own] if isinstance(own, str) else own), _PG_READ_ONLY]
            )
        return create_engine(url, **options)
    connect_args.setdefault("timeout", BUSY_TIMEOUT_S)
    engine = create_engine(url, **options)
    if read_only:
        event.listen(engine, "do_connect", _sqlite_read_only)
    pragmas = _SQLITE_READ_PRAGMAS if read_only else _SQLITE_WRITE_PRAGMAS
    event.listen(engine, "connect", _sqlite_connect(pragmas))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def missing_sqlite_file(url: str) -> bool:
    """Whether ``url`` names a SQLite file that does not exist yet or is empty.

    Connecting to such a URL would create the file, so readers refuse it first (a mistyped
    path must not leave an empty database behind) and ``submit`` creates the schema in it.

    Example:
        >>> missing_sqlite_file("sqlite:////no/such/dir/x.db"), missing_sqlite_file("sqlite://")
        (True, False)
    """
    path = sqlite_path(url)
    return path is not None and (not path.exists() or path.stat().st_size == 0)


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names; ``None`` for other databases and in-memory ones.

    Example:
        >>> sqlite_path("sqlite:////data/ps.db"), sqlite_path("sqlite://")
        (PosixPath('/data/ps.db'), None)
    """
    parsed = _parse(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


def write_engine(engine: Engine) -> Engine:
    """``engine`` whose transactions start with ``BEGIN IMMEDIATE`` on SQLite.

    A plain ``BEGIN`` that later writes fails at once with "database is locked" when another
    writer got there first (the busy timeout does not apply to the upgrade); ``IMMEDIATE`` waits.
    """
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{_IMMEDIATE: True})


def optuna_storage(url: str, **kwargs: Any) -> RDBStorage:
    """Optuna's RDB storage on the same database, with the same busy timeout and pre-ping.

    Keyword arguments go to :class:`optuna.storages.RDBStorage`.

    Example:
        >>> storage = optuna_storage("sqlite:///poolstride.db")  # doctest: +SKIP
    """
    from optuna.storages import RDBStorage

    url = normalize_url(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    sqlite = _parse(url).get_backend_name() == "sqlite"
    if sqlite:
        engine_kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    storage = RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    if sqlite:
        # Optuna commits every attribute, parameter and state on its own; with SQLite's
        # default synchronous=FULL each commit waits for a disk flush, which made the driver's
        # share of a trial seconds long on a busy disk
        event.listen(storage.engine, "connect", _sqlite_wal_normal)
        storage.engine.dispose()  # the connections Optuna's schema check opened lack it
    return storage


def db_now(session: Session) -> datetime:
    """The queue's clock, timezone-aware UTC.

    PostgreSQL: the server's transaction time, so that workers on machines with skewed clocks
    agree on lease expiry. SQLite: this machine's UTC clock (the database is a local file, so
    every process that opens it shares the clock).
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(select(func.now())).scalar_one().astimezone(timezone.utc)
    return datetime.now(timezone.utc)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise ValueError(
            f"database URL {url!r} is not a URL like sqlite:///poolstride.db or "
            "postgresql://user@host/db"
        ) from None


def _refuse_sqlite_authority(url: str, parsed: URL) -> None:
    parts = [
        f"{name} {value!r}"
        for name, value in (
            ("user", parsed.username),
            ("host", parsed.host),
            ("port", parsed.port),
        )
        if value
    ]
    if not parts:
        return
    named = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    # The likeliest intent: the "host" is the path's first folder.
    path = "/".join(p for p in (parsed.host, parsed.database) if p) or "poolstride.db"
    raise ValueError(
        f"database URL {display_url(url)!r} names {named}, which SQLite URLs do not take: "
        f"write sqlite:///{path} (a path relative to the current folder) or "
        f"sqlite:////{path} (an absolute path)"
    )


def _sqlite_read_only(
    _dialect: Dialect, _record: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
) -> None:
    # The dialect's own arguments, with the file as a URI in mode=ro: SQLite then refuses every
    # write and creates nothing (no journal, no -wal or -shm beside a rollback-journal file).
    name = cargs[0] if cparams.get("uri") else "file:" + quote(cargs[0], safe="/:")
    cargs[0] = f"{name}{'&' if '?' in name else '?'}mode=ro"
    cparams["uri"] = True


def _sqlite_connect(
    pragmas: tuple[str, ...],
) -> Callable[[SQLiteConnection, ConnectionPoolEntry], None]:
    def connect(dbapi_connection: SQLiteConnection, _record: ConnectionPoolEntry) -> None:
        # Hand transaction control to SQLAlchemy (see _sqlite_begin).
        dbapi_connection.isolation_level = None
        for pragma in pragmas:
            dbapi_connection.execute(f"PRAGMA {pragma}")

    return connect


def _sqlite_wal_normal(dbapi_connection: SQLiteConnection, _record: ConnectionPoolEntry) -> None:
    # synchronous=NORMAL as poolstride's own writers use (durable enough under WAL: a crash of
    # the process loses nothing); a file in another journal mode keeps SQLite's default
    cursor = dbapi_connection.cursor()
    try:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
