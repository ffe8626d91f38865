"""Errors the store raises for conditions a caller is expected to handle.

Every error from the database driver that reaches the store's callers is a
:class:`DatabaseError` (:func:`database_errors` is the one place that turns one into the
other), so a caller handles :class:`StoreError` and never SQLAlchemy's exceptions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from search.store._engine import display_url

__all__ = [
    "DatabaseError",
    "DatabaseUnavailableError",
    "JobNotFoundError",
    "JobStateError",
    "LeaseLostError",
    "SchemaError",
    "StoreError",
    "database_errors",
    "first_line",
]


class StoreError(Exception):
    """Base of the store's expected errors; the message is one line for the user."""


class SchemaError(StoreError):
    """The database's poolstride schema is missing or not the one this code expects."""


class JobNotFoundError(StoreError, LookupError):
    """No job has the given id."""


class JobStateError(StoreError):
    """The job is in a state that does not allow the operation (e.g. cancelling a finished job)."""


class LeaseLostError(StoreError):
    """The worker no longer holds the job: its lease expired and the job moved on."""


class DatabaseError(StoreError):
    """The database refused or failed a statement; the driver's exception is ``__cause__``."""


class DatabaseUnavailableError(DatabaseError):
    """The database could not be reached or dropped the connection (worth retrying)."""


_SQLITE_READONLY = 8  # sqlite3.SQLITE_READONLY, a module constant only from Python 3.11


@contextmanager
def database_errors(url: str | URL) -> Iterator[None]:
    """Raise a SQLAlchemy error from the block (directly, or as the cause of Optuna's storage
    error) as a :class:`DatabaseError`, chained.

    The message is one line, ``database <url>: <the driver's first line>``, with any password
    masked; connection-level errors (``OperationalError``, ``InterfaceError``) become
    :class:`DatabaseUnavailableError`, except SQLite's refusal to write a read-only database
    (no outage: retrying cannot help). Other exceptions pass through unchanged.

    Example:
        >>> with database_errors("sqlite:///x.db"):
        ...     raise sa_exc.OperationalError("SELECT 1", {}, Exception("disk I/O error"))
        Traceback (most recent call last):
        ...
        search.store._errors.DatabaseUnavailableError: database sqlite:///x.db: disk I/O error
    """
    try:
        yield
    except Exception as raised:
        # Optuna's storage re-raises a driver failure as its own StorageInternalError, with
        # SQLAlchemy's exception as the cause
        exc = raised if isinstance(raised, sa_exc.SQLAlchemyError) else raised.__cause__
        if not isinstance(exc, sa_exc.SQLAlchemyError):
            raise
        unavailable = isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ) and not _sqlite_read_only(exc.orig)
        kind = DatabaseUnavailableError if unavailable else DatabaseError
        raise kind(f"database {display_url(url)}: {first_line(exc)}") from exc


def _sqlite_read_only(driver_error: BaseException | None) -> bool:
    # SQLITE_READONLY and its extended codes (whose low byte is the primary code); Python 3.10's
    # sqlite3 has neither the constant nor the code, only the message
    if not isinstance(driver_error, sqlite3.Error):
        return False
    code: int | None = getattr(driver_error, "sqlite_errorcode", None)
    if code is None:
        return "readonly database" in str(driver_error)
    return code & 0xFF == _SQLITE_READONLY


def first_line(exc: sa_exc.SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's statement and "Background on this error".

    Example:
        >>> first_line(sa_exc.OperationalError("SELECT 1", {}, Exception("gone\\nmore")))
        'gone'
    """
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
