"""poolstride's database: schema management, the job queue, candidates and their reads.

One database holds Optuna's tables and poolstride's (``ps_*``). Open it with
:meth:`Store.open`; create or upgrade it with :func:`upgrade` (``poolstride db upgrade``).
Reads return plain dataclasses and DataFrames; the tables' ORM classes are private, and the
filtered frames and the front are :mod:`search.query`'s. Every database failure reaches a
caller as a :class:`StoreError` (:class:`DatabaseUnavailableError` when it is worth retrying).

Example:
    >>> from search.store import Store, upgrade
    >>> upgrade("sqlite:///poolstride.db")  # doctest: +SKIP
    >>> with Store.open("sqlite:///poolstride.db") as store:  # doctest: +SKIP
    ...     print([job.status for job in store.list_jobs()])
"""

from __future__ import annotations

from search.store._engine import (
    DB_ENV_VAR,
    DEFAULT_DB_URL,
    display_url,
    make_engine,
    missing_sqlite_file,
    normalize_url,
    optuna_storage,
    resolve_db_url,
)
from search.store._errors import (
    DatabaseError,
    DatabaseUnavailableError,
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    SchemaError,
    StoreError,
    database_errors,
)
from search.store._query import epochs_frame
from search.store._retry import OUTAGE, RETRY_S, db_error_line, db_errors, retrying
from search.store._schema import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from search.store._store import DEFAULT_LEASE_S, WORKER_RETENTION, Store, new_worker_id
from search.store._types import (
    CachedResult,
    CandidateInfo,
    Heartbeat,
    JobInfo,
    PhaseProgress,
    WorkerInfo,
)

__all__ = [
    "DB_ENV_VAR",
    "DEFAULT_DB_URL",
    "DEFAULT_LEASE_S",
    "OUTAGE",
    "RETRY_S",
    "WORKER_RETENTION",
    "CachedResult",
    "CandidateInfo",
    "DatabaseError",
    "DatabaseUnavailableError",
    "Heartbeat",
    "JobInfo",
    "JobNotFoundError",
    "JobStateError",
    "LeaseLostError",
    "PhaseProgress",
    "SchemaError",
    "Store",
    "StoreError",
    "WorkerInfo",
    "check_schema",
    "current_revision",
    "database_errors",
    "db_error_line",
    "db_errors",
    "display_url",
    "downgrade",
    "epochs_frame",
    "head_revision",
    "make_engine",
    "missing_sqlite_file",
    "new_worker_id",
    "normalize_url",
    "optuna_storage",
    "resolve_db_url",
    "retrying",
    "upgrade",
]
