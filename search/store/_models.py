"""poolstride's own tables (prefix ``ps_``); Optuna's tables share the database untouched.

Private to the store: its queries are the only SQL written against these classes, and callers
get plain dataclasses and frames. The migrations in ``search/store/migrations/versions`` must
create exactly this metadata (``tests/store/test_migrations.py`` compares them).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from search._checks import INT32, INT64, Bounds
from search.vocabulary import (
    CANDIDATE_STATES,
    JOB_STATUSES,
    PHASES,
    CandidateState,
    JobStatus,
    Phase,
    WorkerStatus,
)

__all__ = [
    "TABLE_PREFIX",
    "Base",
    "Candidate",
    "Epoch",
    "Job",
    "Stage",
    "Worker",
    "column_bounds",
]

INT16 = Bounds(-(2**15), 2**15 - 1)

TABLE_PREFIX = "ps_"

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def column_bounds(type_: TypeEngine[object]) -> Bounds | None:
    """The integers a column of SQLAlchemy type ``type_`` holds on every backend poolstride
    supports; ``None`` for a column that is not an integer.

    Example:
        >>> column_bounds(Integer()) == INT32, column_bounds(BigInteger()) == INT64
        (True, True)
        >>> column_bounds(Float()) is None
        True
    """
    if isinstance(type_, BigInteger):
        return INT64
    if isinstance(type_, SmallInteger):
        return INT16
    return INT32 if isinstance(type_, Integer) else None


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python; ``timestamptz`` on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of poolstride's tables, with deterministic constraint names."""

    metadata = MetaData(naming_convention=_NAMING)


class Job(Base):
    """A queued search: its config, its place in the queue and its lease."""

    __tablename__ = "ps_jobs"
    __table_args__ = (CheckConstraint(_one_of("status", JOB_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[JobStatus] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    config: Mapped[str] = mapped_column(Text)
    study_name: Mapped[str] = mapped_column(String(200), unique=True)
    trials_total: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # JSON of search.datasets.DatasetFacts.to_dict(); NULL until a worker has loaded the data
    dataset_facts: Mapped[str | None] = mapped_column(Text)
    # JSON {phase: details} of the planned phases (confirm, ablate); NULL until one is planned
    plan: Mapped[str | None] = mapped_column(Text)


# Claim order: highest priority first, then oldest.
Index("ix_ps_jobs_claim", Job.status, Job.priority.desc(), Job.created_at)


class Worker(Base):
    """A worker process: liveness by heartbeat."""

    __tablename__ = "ps_workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    status: Mapped[WorkerStatus] = mapped_column(String(16))
    current_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("ps_jobs.id", ondelete="SET NULL")
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime)
    # the lease the worker runs with: a heartbeat older than this means the worker is lost
    # (NULL on rows from before migration 0003)
    lease_seconds: Mapped[float | None] = mapped_column(Float)


class Candidate(Base):
    """One training of an architecture (running, or ended), or a result served from the
    cache (``cached_from``), joined to its Optuna trial."""

    __tablename__ = "ps_candidates"
    __table_args__ = (
        UniqueConstraint("job_id", "trial_number"),
        Index("ix_ps_candidates_job_id_state", "job_id", "state"),
        CheckConstraint(_one_of("state", CANDIDATE_STATES), name="state"),
        CheckConstraint(_one_of("phase", PHASES), name="phase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("ps_jobs.id", ondelete="CASCADE"))
    trial_number: Mapped[int] = mapped_column(Integer)
    optuna_trial_id: Mapped[int | None] = mapped_column(Integer, index=True)
    state: Mapped[CandidateState] = mapped_column(String(16))
    arch_json: Mapped[str] = mapped_column(Text)
    arch_hash: Mapped[str] = mapped_column(String(16), index=True)
    val_acc: Mapped[float | None] = mapped_column(Float)
    test_acc: Mapped[float | None] = mapped_column(Float)
    flops: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[int] = mapped_column(BigInteger)
    activation_bytes: Mapped[int] = mapped_column(BigInteger)
    receptive_field: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    train_s: Mapped[float | None] = mapped_column(Float)
    epochs_done: Mapped[int] = mapped_column(Integer)
    epochs_total: Mapped[int] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the job phase that asked for this training; rows from before migration 0004 are search's
    phase: Mapped[Phase] = mapped_column(String(16), server_default="search")
    # which of the architecture's seeds this is (0 for every search-phase candidate)
    replicate: Mapped[int] = mapped_column(Integer, server_default="0")
    # ablate rows: the trial number of the reference architecture's trial they vary
    reference: Mapped[int | None] = mapped_column(Integer)
    # a result served by the cache: the candidate it was copied from (its curve copied too).
    # No ON DELETE action: a source is not deleted while a copy names it (SQLite adds the
    # reference in place only as a column constraint, whose action SQLAlchemy cannot reflect)
    cached_from: Mapped[int | None] = mapped_column(ForeignKey("ps_candidates.id"))
    # search.cache.cache_key of what was trained: architecture, data, settings and seed
    cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    # latency_ms over the fixed reference network's on the same device: comparable across GPUs
    latency_rel: Mapped[float | None] = mapped_column(Float)
    # the share of a GPU the trial ran with (NULL on the CPU)
    gpu_share: Mapped[float | None] = mapped_column(Float)
    # a candidate early stopping stopped (state pruned): the epoch it stopped at
    stopped_at: Mapped[int | None] = mapped_column(Integer)


class Stage(Base):
    """One stage of a candidate's architecture, so per-stage filters are indexed SQL."""

    __tablename__ = "ps_stages"
    __table_args__ = (
        Index("ix_ps_stages_stage_downsample", "stage", "downsample"),
        Index("ix_ps_stages_stage_kernel", "stage", "kernel"),
        Index("ix_ps_stages_stage_skip", "stage", "skip"),
    )

    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("ps_candidates.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    downsample: Mapped[str] = mapped_column(String(16))
    kernel: Mapped[int] = mapped_column(Integer)
    skip: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    depth: Mapped[int] = mapped_column(Integer)


class Epoch(Base):
    """One point of a candidate's learning curve (epochs are numbered from 1)."""

    __tablename__ = "ps_epochs"

    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("ps_candidates.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    val_acc: Mapped[float | None] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
