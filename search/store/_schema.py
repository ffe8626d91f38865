"""Schema management: poolstride's Alembic migrations beside Optuna's own.

poolstride's migrations ship inside this package, in ``search/store/migrations`` (package
data, as Optuna ships its own), so an installed poolstride upgrades a database without its
source tree; ``alembic.ini`` at the repository root points the ``alembic`` command there. They
record their revision in ``ps_alembic_version``: Optuna's storage owns ``alembic_version`` and
refuses a database whose revision there it does not know. Autogenerate only sees tables named
``ps_*``. :func:`check_schema` holds both revisions to what this install's poolstride and
Optuna expect, as Optuna's own storage does with its revision.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from search.store._engine import (
    display_url,
    make_engine,
    missing_sqlite_file,
    optuna_storage,
    sqlite_path,
    write_engine,
)
from search.store._errors import SchemaError, database_errors
from search.store._models import TABLE_PREFIX

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "alembic_config",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "include_name",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "ps_alembic_version"
UPGRADE_HINT = "run `poolstride db upgrade`"
# Where Optuna's storage keeps its revision and its migrations (optuna/storages/_rdb/storage.py).
OPTUNA_VERSION_TABLE = "alembic_version"
OPTUNA_MIGRATIONS_DIR = Path(optuna.__file__).resolve().parent / "storages" / "_rdb" / "alembic"


class _History(NamedTuple):
    """One line of migrations that a database's revision is held to."""

    software: str  # what to upgrade when the database is newer
    schema: str  # what the messages call it
    version_table: str
    head: str
    known: frozenset[str]

    def refuse(self, url: str | URL, current: str) -> None:
        """Refuse ``current`` unless it is the head: unknown (the database is newer than this
        software) or older (``poolstride db upgrade`` migrates it)."""
        if current == self.head:
            return
        where = display_url(url)
        if current not in self.known:
            raise SchemaError(
                f"database {where} has {self.schema} revision {current}, which this "
                f"{self.software} does not know: upgrade {self.software}"
            )
        raise SchemaError(
            f"database {where} {self.schema} is at revision {current}, {self.software} needs "
            f"{self.head}: {UPGRADE_HINT}"
        )


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: only poolstride's ``ps_*`` tables take part in autogenerate.

    Example:
        >>> include_name("ps_jobs", "table", {}), include_name("trials", "table", {})
        (True, False)
    """
    if type_ == "table":
        return bool(name) and str(name).startswith(TABLE_PREFIX)
    return True


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config for poolstride's migrations; with ``engine``, they run on it."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise SchemaError(f"poolstride's migrations are missing from {MIGRATIONS_DIR}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


@functools.cache
def head_revision() -> str:
    """The revision poolstride's code expects (the single head of its migrations)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"poolstride's migrations have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in the database, or ``None`` if it has no poolstride schema.

    Raises:
        DatabaseError: the database failed the read (:class:`DatabaseUnavailableError`: could
            not be reached).
    """
    return _revision(engine, VERSION_TABLE)


def check_schema(engine: Engine) -> None:
    """Refuse a database whose poolstride schema is missing or not at :func:`head_revision`,
    or whose Optuna schema is not the one this Optuna uses.

    A database without Optuna's tables passes: Optuna's storage creates them on first use.

    Raises:
        SchemaError: one line that names ``poolstride db upgrade`` (or says poolstride, or
            Optuna, is older than the database).
        DatabaseError: the database failed the read (see :func:`current_revision`).

    Example:
        >>> try:
        ...     check_schema(make_engine("sqlite://"))
        ... except SchemaError as refused:
        ...     print(refused)
        database sqlite:// has no poolstride schema: run `poolstride db upgrade`
    """
    current = current_revision(engine)
    if current is None:
        raise SchemaError(
            f"database {display_url(engine.url)} has no poolstride schema: {UPGRADE_HINT}"
        )
    _poolstride_history().refuse(engine.url, current)
    optuna_current = _revision(engine, OPTUNA_VERSION_TABLE)
    if optuna_current is not None:
        _optuna_history().refuse(engine.url, optuna_current)


def upgrade(url: str, revision: str = "head") -> str:
    """Create or upgrade Optuna's tables and poolstride's; return poolstride's new revision.

    Raises:
        SchemaError: the database has a poolstride or Optuna revision that this install does
            not know (a newer poolstride or Optuna made it); nothing is changed.
        DatabaseError: the database failed (:class:`DatabaseUnavailableError`: could not be
            reached).

    Example:
        >>> upgrade("sqlite:///poolstride.db")  # doctest: +SKIP
        '0003'
    """
    with database_errors(url):
        _refuse_unknown_revisions(url)
        _upgrade_optuna(url)
        engine = make_engine(url)
        try:
            command.upgrade(alembic_config(write_engine(engine)), revision)
            return current_revision(engine) or "base"
        finally:
            engine.dispose()


def downgrade(url: str, revision: str) -> str | None:
    """Downgrade poolstride's tables (never Optuna's) to ``revision`` (``"base"``: drop them).

    Raises:
        DatabaseError: as :func:`upgrade`.
    """
    with database_errors(url):
        engine = make_engine(url)
        try:
            command.downgrade(alembic_config(write_engine(engine)), revision)
            return current_revision(engine)
        finally:
            engine.dispose()


def _revision(engine: Engine, version_table: str) -> str | None:
    with database_errors(engine.url), engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": version_table})
        return context.get_current_revision()


@functools.cache
def _poolstride_history() -> _History:
    script = ScriptDirectory.from_config(alembic_config())
    known = frozenset(rev.revision for rev in script.walk_revisions())
    return _History("poolstride", "schema", VERSION_TABLE, head_revision(), known)


@functools.cache
def _optuna_history() -> _History:
    # Optuna's _VersionManager compares with the head of these same scripts.
    script = ScriptDirectory(str(OPTUNA_MIGRATIONS_DIR))
    head = script.get_current_head()
    if head is None:
        raise SchemaError(f"Optuna's migrations in {OPTUNA_MIGRATIONS_DIR} have no head")
    known = frozenset(rev.revision for rev in script.walk_revisions())
    return _History("Optuna", "Optuna schema", OPTUNA_VERSION_TABLE, head, known)


def _refuse_unknown_revisions(url: str) -> None:
    # Alembic cannot migrate from a revision it does not know (a traceback, after the other
    # schema may have moved already): ask both first, read-only, so a refusal changes nothing.
    if missing_sqlite_file(url):
        path = sqlite_path(url)
        folder = path.parent if path is not None else None
        if folder is not None and not folder.is_dir():  # SQLite says "unable to open"
            raise SchemaError(f"database {display_url(url)}: folder {str(folder)!r} does not exist")
        return
    engine = make_engine(url, read_only=True)
    try:
        for history in (_poolstride_history(), _optuna_history()):
            current = _revision(engine, history.version_table)
            if current is not None and current not in history.known:
                history.refuse(engine.url, current)
    finally:
        engine.dispose()


def _upgrade_optuna(url: str) -> None:
    # Constructing the storage creates missing tables and stamps a fresh database at Optuna's
    # head; only an older existing schema needs Optuna's own migrations.
    storage = optuna_storage(url, skip_compatibility_check=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            with _quiet_optuna_alembic():
                storage.upgrade()
    finally:
        storage.engine.dispose()


@contextmanager
def _quiet_optuna_alembic() -> Iterator[None]:
    # Optuna's env.py calls logging.config.fileConfig() when the root logger has no handler,
    # which would disable every logger configured so far.
    root = logging.getLogger()
    guard = logging.NullHandler()
    if not root.handlers:
        root.addHandler(guard)
    try:
        yield
    finally:
        root.removeHandler(guard)
