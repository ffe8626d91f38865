"""poolstride's database: tables, schema management, the job queue, candidates and reads.

One database holds Optuna's tables and poolstride's (``ps_*``). Open it with
:meth:`Store.open`; create or upgrade it with :func:`upgrade` (``poolstride db upgrade``).

Example:
    >>> from search.store import Store, upgrade
    >>> upgrade("sqlite:///poolstride.db")  # doctest: +SKIP
    >>> with Store.open("sqlite:///poolstride.db") as store:  # doctest: +SKIP
    ...     print([job.status for job in store.list_jobs()])
"""

from __future__ import annotations

from search.store._candidates import (
    candidates_frame,
    epochs_frame,
    fail_running_candidates,
    finish_candidate,
    list_candidates,
    record_epoch,
    start_candidate,
    trials_done,
)
from search.store._engine import (
    BUSY_TIMEOUT_S,
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
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    SchemaError,
    StoreError,
)
from search.store._models import (
    TABLE_PREFIX,
    Base,
    Candidate,
    Epoch,
    Job,
    Stage,
    Worker,
)
from search.store._retry import RETRY_S, db_errors, retrying
from search.store._schema import (
    VERSION_TABLE,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    include_name,
    upgrade,
)
from search.store._store import Store, new_worker_id
from search.store._types import CandidateInfo, Heartbeat, JobInfo, WorkerInfo
from search.vocabulary import CANDIDATE_STATES, FINAL_STATUSES, JOB_STATUSES

__all__ = [
    "BUSY_TIMEOUT_S",
    "CANDIDATE_STATES",
    "DB_ENV_VAR",
    "DEFAULT_DB_URL",
    "FINAL_STATUSES",
    "JOB_STATUSES",
    "RETRY_S",
    "TABLE_PREFIX",
    "VERSION_TABLE",
    "Base",
    "Candidate",
    "CandidateInfo",
    "Epoch",
    "Heartbeat",
    "Job",
    "JobInfo",
    "JobNotFoundError",
    "JobStateError",
    "LeaseLostError",
    "SchemaError",
    "Stage",
    "Store",
    "StoreError",
    "Worker",
    "WorkerInfo",
    "candidates_frame",
    "check_schema",
    "current_revision",
    "db_errors",
    "display_url",
    "downgrade",
    "epochs_frame",
    "fail_running_candidates",
    "finish_candidate",
    "head_revision",
    "include_name",
    "list_candidates",
    "make_engine",
    "missing_sqlite_file",
    "new_worker_id",
    "normalize_url",
    "optuna_storage",
    "record_epoch",
    "resolve_db_url",
    "retrying",
    "start_candidate",
    "trials_done",
    "upgrade",
]
