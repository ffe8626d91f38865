"""The retry policy for a dropped database connection: one place, for every writer.

A restarted database server or a failover must not lose a finished trial or crash a worker: the
writes poolstride makes are idempotent (upserts, ``skip_if_finished``, re-reads before a
change), so calling one again after a lost connection counts nothing twice.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

from search.store._errors import DatabaseUnavailableError

__all__ = ["RETRY_S", "db_errors", "retrying"]

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


def retrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``, retrying for up to :data:`RETRY_S` while the database is unreachable.

    Example:
        >>> retrying(int, "3")
        3
    """
    delay, deadline = 0.5, time.monotonic() + RETRY_S
    while True:
        try:
            return fn(*args, **kwargs)
        except db_errors() as exc:
            if time.monotonic() > deadline:
                raise
            log.warning(
                "database unreachable (%s); retrying in %.1f s", str(exc).splitlines()[0], delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
