"""The retry policy for a dropped database connection: one place, for every writer and poller.

A restarted database server or a failover must not lose a finished trial or crash a worker: the
writes poolstride makes are idempotent (upserts, ``skip_if_finished``, re-reads before a
change), so calling one again after a lost connection counts nothing twice.

An outage is logged once per process, however many threads and calls wait it out: one warning
when the first call finds the database unreachable, one line when a call gets through again.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

from search.store._errors import DatabaseUnavailableError, first_line

__all__ = ["OUTAGE", "RETRY_S", "Outage", "db_error_line", "db_errors", "retrying"]

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_S = 120.0


@functools.cache
def db_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the database is unreachable right now".

    The store's own (:class:`DatabaseUnavailableError`, what its sessions raise), SQLAlchemy's
    connection-level errors (from engines used directly, such as Optuna's), and Optuna's
    wrapper of them. Optuna is imported here, on first use, so that this module alone does not
    depend on it; the store as a whole does import Optuna (:mod:`search.config` reads the
    sampler names from :mod:`search.study`).

    Example:
        >>> DatabaseUnavailableError in db_errors()
        True
    """
    from optuna.exceptions import StorageInternalError

    return (
        DatabaseUnavailableError,
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        StorageInternalError,
    )


def db_error_line(exc: BaseException) -> str:
    """What the driver said, in one line: Optuna's storage error wraps it in a message about
    "invalid data in the commit" that is wrong for a lost connection, so the cause is read.

    Example:
        >>> db_error_line(DatabaseUnavailableError("database sqlite:///x.db: disk I/O error"))
        'database sqlite:///x.db: disk I/O error'
    """
    cause: BaseException = exc
    if not isinstance(exc, sa_exc.SQLAlchemyError | DatabaseUnavailableError):
        cause = exc.__cause__ or exc
    if isinstance(cause, sa_exc.SQLAlchemyError):
        return first_line(cause)
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


class Outage:
    """The process's view of the database: up, or down since a time (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    def down(self, exc: BaseException) -> None:
        """A call found the database unreachable; the first of an outage logs a warning."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        log.warning(
            "database unreachable (%s); retrying quietly for up to %.0f s",
            db_error_line(exc),
            RETRY_S,
        )

    def up(self) -> None:
        """A call got through; the first after an outage says how long it lasted."""
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.info("database reachable again after %.1f s", time.monotonic() - since)


OUTAGE = Outage()


def retrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``, retrying for up to :data:`RETRY_S` while the database is unreachable.

    Raises:
        DatabaseUnavailableError: still unreachable after :data:`RETRY_S`.

    Example:
        >>> retrying(int, "3")
        3
    """
    delay, deadline = 0.5, time.monotonic() + RETRY_S
    while True:
        try:
            result = fn(*args, **kwargs)
        except db_errors() as exc:
            if time.monotonic() > deadline:
                if isinstance(exc, DatabaseUnavailableError):
                    raise
                # Optuna's and SQLAlchemy's errors too reach the caller as the store's own,
                # one line without "invalid data in the commit"
                raise DatabaseUnavailableError(db_error_line(exc)) from exc
            OUTAGE.down(exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        OUTAGE.up()
        return result
