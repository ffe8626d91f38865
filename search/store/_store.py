"""The :class:`Store`: an engine, transaction scopes, the job queue, candidates and workers.

Every queue operation is one short transaction that takes its row lock up front (``FOR UPDATE``
on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so two workers never both act on one job.
Times come from :func:`search.store._engine.db_now`: the server clock on PostgreSQL, this
machine's UTC clock on SQLite.

The candidate writes are idempotent, so a retried call (a worker that crashed and resumed, a
write repeated after a lost connection) counts nothing twice: candidates are keyed by
``(job_id, trial_number)`` and epochs by ``(candidate_id, epoch)``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from search.config import JobConfig
from search.cost import Cost
from search.datasets import DatasetFacts
from search.space import ArchSpec
from search.store._engine import (
    db_now,
    display_url,
    make_engine,
    missing_sqlite_file,
    normalize_url,
    write_engine,
)
from search.store._errors import (
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    SchemaError,
    database_errors,
)
from search.store._models import Candidate, Epoch, Job, Stage, Worker
from search.store._query import candidates_query
from search.store._schema import UPGRADE_HINT, check_schema, upgrade
from search.store._types import (
    CachedResult,
    CandidateInfo,
    Heartbeat,
    JobInfo,
    PhaseProgress,
    WorkerInfo,
)
from search.vocabulary import (
    FINAL_CANDIDATE_STATES,
    FINAL_STATUSES,
    JOB_STATUSES,
    PHASES,
    STAGE_KEYS,
    CandidateState,
    FinalStatus,
    JobStatus,
    Phase,
    WorkerStatus,
)

__all__ = ["DEFAULT_LEASE_S", "WORKER_RETENTION", "Store", "new_worker_id"]

DEFAULT_LEASE_S = 60.0
WORKER_RETENTION = timedelta(days=7)
# the phases a worker plans after the search, whose size the job's config alone cannot tell
_PLANNED: tuple[Phase, ...] = PHASES[1:]


def new_worker_id() -> str:
    """A fresh worker id: ``host-pid-random``.

    Example:
        >>> new_worker_id().count("-") >= 2
        True
    """
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Store:
    """poolstride's tables on one database: sessions, the job queue, candidates and workers.

    Example:
        >>> store = Store.open("sqlite:///poolstride.db")  # doctest: +SKIP
        >>> job = store.submit(JobConfig.from_mapping({"trials": 8, "epochs": 2}))  # doctest: +SKIP
        >>> store.claim("w1", lease_seconds=60).id == job.id  # doctest: +SKIP
        True
    """

    def __init__(self, db: str | Engine, *, read_only: bool = False) -> None:
        """Wrap an engine, or make one for a URL (see :func:`make_engine`, which ``read_only``
        goes to); no schema check."""
        self.engine = make_engine(db, read_only=read_only) if isinstance(db, str) else db
        self._write_engine = write_engine(self.engine)

    @classmethod
    def open(
        cls, url: str, *, read_only: bool = False, create: bool = False, check: bool = True
    ) -> Store:
        """Open the database at ``url`` and check its schema is current.

        Args:
            url: A SQLite or PostgreSQL URL (``postgresql://`` is served by psycopg 3).
            read_only: Every write fails (:class:`DatabaseError`) and opening changes nothing:
                a SQLite file is opened ``mode=ro`` and keeps its journal mode, PostgreSQL runs
                every transaction read-only. For whatever only reads (the dashboard, queries).
            create: For a SQLite file that does not exist yet (or is empty), create the schema
                first, as ``poolstride db upgrade`` would. Existing databases are never upgraded
                implicitly.
            check: Verify the schema revisions, poolstride's and Optuna's
                (:func:`check_schema`).

        Raises:
            ValueError: ``read_only`` with ``create``.
            SchemaError: no SQLite file there (and no ``create``), or a schema is not current.
            DatabaseUnavailableError: the database could not be reached.

        Example:
            >>> store = Store.open("sqlite:///poolstride.db", read_only=True)  # doctest: +SKIP
            >>> [job.status for job in store.list_jobs()]  # doctest: +SKIP
            ['succeeded']
        """
        if read_only and create:
            raise ValueError("Store.open: create writes the schema, read_only may not write")
        url = normalize_url(url)
        if missing_sqlite_file(url):
            if create:
                upgrade(url)
            elif check:  # do not leave an empty file behind a read
                raise SchemaError(f"database {display_url(url)} does not exist: {UPGRADE_HINT}")
        store = cls(url, read_only=read_only)
        if check:
            try:
                check_schema(store.engine)
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction: commits when the block ends, rolls back if it raises.

        ``write=True`` takes SQLite's write lock at the start (``BEGIN IMMEDIATE``); use it for
        any read-then-write, or the upgrade from reader to writer can fail at once when another
        process writes.

        Raises:
            DatabaseUnavailableError: the database could not be reached or dropped the
                connection (:func:`search.store.retrying` retries it).
            DatabaseError: the database failed a statement, the commit included. Both are
                chained to SQLAlchemy's exception; other exceptions pass through unchanged.

        Example:
            >>> with store.session() as s:  # doctest: +SKIP
            ...     s.scalar(text("SELECT COUNT(*) FROM ps_jobs"))
        """
        with (
            database_errors(self.engine.url),
            Session(
                self._write_engine if write else self.engine, expire_on_commit=False
            ) as session,
            session.begin(),
        ):
            yield session

    # -- the queue ------------------------------------------------------------------------

    def submit(self, config: JobConfig) -> JobInfo:
        """Queue a validated search; its Optuna study name is fixed here.

        Example:
            >>> store.submit(config).status  # doctest: +SKIP
            'queued'
        """
        with self.session(write=True) as s:
            now = db_now(s)
            job = Job(
                name=config.name,
                status="queued",
                priority=config.priority,
                config=json.dumps(config.to_dict(), sort_keys=True),
                study_name=f"poolstride-pending-{secrets.token_hex(8)}",
                trials_total=config.trials,
                attempts=0,
                max_attempts=config.max_attempts,
                cancel_requested=False,
                created_at=now,
                updated_at=now,
            )
            s.add(job)
            s.flush()
            job.study_name = _study_name(s, job.id)
            s.flush()
            return _info(job, _Counts())

    def list_jobs(self, status: JobStatus | None = None) -> list[JobInfo]:
        """Jobs oldest first, optionally only those with ``status``."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(
                f"unknown status {status!r} (expected one of {', '.join(JOB_STATUSES)})"
            )
        query = select(Job).order_by(Job.id)
        if status is not None:
            query = query.where(Job.status == status)
        with self.session() as s:
            jobs = s.scalars(query).all()
            counts = _counts(s, None if status is None else [job.id for job in jobs])
            return [_info(job, counts.get(job.id, _Counts())) for job in jobs]

    def get_job(self, job_id: int) -> JobInfo:
        """One job with its progress.

        Raises:
            JobNotFoundError: no job has that id.
        """
        with self.session() as s:
            return _info(_job(s, job_id), _progress(s, job_id))

    def cancel(self, job_id: int) -> JobInfo:
        """Cancel a job: a queued one at once, a running one by a request its worker honours.

        Cancelling a cancelled job changes nothing.

        Raises:
            JobNotFoundError: no job has that id.
            JobStateError: the job already succeeded or failed.
        """
        with self.session(write=True) as s:
            job = _job(s, job_id, lock=True)
            now = db_now(s)
            if job.status in ("succeeded", "failed"):
                raise JobStateError(f"job {job_id} already {job.status}; nothing to cancel")
            if job.status != "cancelled":
                if job.status == "queued":
                    job.status, job.finished_at = "cancelled", now
                job.cancel_requested, job.updated_at = True, now
            return _info(job, _progress(s, job_id))

    def claim(
        self, worker_id: str, lease_seconds: float, *, job_id: int | None = None
    ) -> JobInfo | None:
        """Take the next job: highest priority, then oldest; ``None`` if there is none.

        A running job whose lease expired is claimable again (its worker died or hung), unless
        it has used all its attempts or has a cancel pending: :meth:`end_expired` ends those.
        Each claim counts one attempt, and marks ``worker_id``'s row ``busy`` with the job; a
        job ``worker_id`` already holds is returned as it is (a claim retried after its commit).
        With ``job_id``, only that job is considered (``poolstride run`` works its own job).

        Example:
            >>> job = store.claim("host-1-ab12cd", lease_seconds=60)  # doctest: +SKIP
        """
        lease = _lease(lease_seconds)
        with self.session(write=True) as s:
            now = db_now(s)
            # A worker runs one job at a time, so a job it already holds is one whose claim
            # committed before the connection dropped: a retried claim takes it up again
            # instead of holding two jobs and counting an attempt for nothing.
            held = select(Job).where(Job.status == "running", Job.worker_id == worker_id)
            if job_id is not None:
                held = held.where(Job.id == job_id)
            job = s.scalars(held.order_by(Job.id).limit(1).with_for_update()).first()
            if job is not None:
                job.lease_expires_at, job.updated_at = now + lease, now
                _worker_row(s, worker_id, "busy", job.id, now)
                return _info(job, _progress(s, job.id))
            expired = and_(Job.status == "running", Job.lease_expires_at < now)
            claimable = or_(
                Job.status == "queued",
                and_(expired, ~Job.cancel_requested, Job.attempts < Job.max_attempts),
            )
            if job_id is not None:
                claimable = and_(Job.id == job_id, claimable)
            job = s.scalars(
                select(Job)
                .where(claimable)
                .order_by(Job.priority.desc(), Job.created_at, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                return None
            if job.status == "running":
                job.error = _lease_lost(job)
            job.status, job.worker_id = "running", worker_id
            job.attempts += 1
            job.lease_expires_at = now + lease
            job.started_at = job.started_at or now
            job.updated_at = now
            _worker_row(s, worker_id, "busy", job.id, now)
            s.flush()
            return _info(job, _progress(s, job.id))

    def end_expired(self) -> list[JobInfo]:
        """End the running jobs whose worker is gone and that may not run again.

        A job whose lease expired becomes ``cancelled`` if a cancel is pending, ``failed`` if
        it has used all its attempts (its ``error`` says whose lease ran out); the rest wait for
        :meth:`claim`. Returns the jobs it ended, whose studies the caller must close
        (:func:`search.study.end_open_trials`): that takes Optuna's storage, outside this
        transaction.

        Example:
            >>> [job.status for job in store.end_expired()]  # doctest: +SKIP
            ['failed']
        """
        with self.session(write=True) as s:
            now = db_now(s)
            jobs = s.scalars(
                select(Job)
                .where(
                    Job.status == "running",
                    Job.lease_expires_at < now,
                    or_(Job.cancel_requested, Job.attempts >= Job.max_attempts),
                )
                .order_by(Job.id)
                .with_for_update(skip_locked=True)
            ).all()
            for job in jobs:
                job.error = _lease_lost(job)
                job.status = "cancelled" if job.cancel_requested else "failed"
                job.finished_at = job.updated_at = now
                job.lease_expires_at = None
            s.flush()
            return [_info(job, _progress(s, job.id)) for job in jobs]

    def ended_with_open_trials(self) -> list[JobInfo]:
        """Ended jobs that still have a ``running`` candidate or a RUNNING Optuna trial.

        What a worker that died between ending a job and closing its study left behind; a
        worker closes them when it starts (:func:`search.study.end_open_trials`).
        """
        with self.session() as s:
            ended = Job.status.in_(FINAL_STATUSES)
            running_rows = select(Candidate.job_id).where(Candidate.state == "running")
            ids = set(s.scalars(select(Job.id).where(ended, Job.id.in_(running_rows))))
            if inspect(s.connection()).has_table("trials"):
                ids.update(
                    s.scalars(
                        text(
                            "SELECT j.id FROM ps_jobs j "
                            "JOIN studies st ON st.study_name = j.study_name "
                            "JOIN trials t ON t.study_id = st.study_id "
                            "WHERE t.state = 'RUNNING' AND j.status IN :ended"
                        ).bindparams(bindparam("ended", list(FINAL_STATUSES), expanding=True))
                    )
                )
            jobs = s.scalars(select(Job).where(Job.id.in_(ids)).order_by(Job.id)).all()
            return [_info(job, _progress(s, job.id)) for job in jobs]

    def heartbeat(self, worker_id: str, job_id: int, lease_seconds: float) -> Heartbeat:
        """Renew ``worker_id``'s lease on ``job_id`` and report whether to stop.

        The worker's row follows: ``busy`` with the job while it holds it, and heard from now.

        Raises:
            JobNotFoundError: no job has that id.
        """
        lease = _lease(lease_seconds)
        with self.session(write=True) as s:
            job = _job(s, job_id, lock=True)
            held = job.status == "running" and job.worker_id == worker_id
            now = db_now(s)
            if held:
                job.lease_expires_at, job.updated_at = now + lease, now
            _worker_row(s, worker_id, "busy" if held else "idle", job_id if held else None, now)
            return Heartbeat(lease_held=held, cancel_requested=job.cancel_requested)

    def finish_job(
        self, job_id: int, worker_id: str, status: FinalStatus, error: str | None = None
    ) -> JobInfo:
        """End a running job held by ``worker_id`` as ``succeeded``, ``failed`` or ``cancelled``.

        Raises:
            LeaseLostError: the job is no longer ``worker_id``'s.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(FINAL_STATUSES)}")
        with self.session(write=True) as s:
            job = _held(s, job_id, worker_id)
            now = db_now(s)
            _worker_row(s, worker_id, "idle", None, now)
            job.status, job.error = status, error
            job.finished_at = job.updated_at = now
            job.lease_expires_at = None
            return _info(job, _progress(s, job_id))

    def fail_attempt(self, job_id: int, worker_id: str, error: str) -> JobInfo:
        """Give a job back after a failed attempt: ``queued`` again, or ``failed`` once it has
        used ``max_attempts`` (``cancelled`` if a cancel is pending). ``error`` is kept.

        Raises:
            LeaseLostError: the job is no longer ``worker_id``'s.
        """
        with self.session(write=True) as s:
            job = _held(s, job_id, worker_id)
            now = db_now(s)
            _worker_row(s, worker_id, "idle", None, now)
            job.error, job.updated_at, job.lease_expires_at = error, now, None
            if job.cancel_requested:
                job.status, job.finished_at = "cancelled", now
            elif job.attempts >= job.max_attempts:
                job.status, job.finished_at = "failed", now
            else:
                job.status, job.worker_id = "queued", None
            return _info(job, _progress(s, job_id))

    def release_job(self, job_id: int, worker_id: str) -> JobInfo:
        """Hand a job back unharmed (its worker is shutting down): ``queued`` again, and the
        attempt it used is not counted (``cancelled`` if a cancel is pending).

        Raises:
            LeaseLostError: the job is no longer ``worker_id``'s.
        """
        with self.session(write=True) as s:
            job = _held(s, job_id, worker_id)
            now = db_now(s)
            _worker_row(s, worker_id, "idle", None, now)
            job.updated_at, job.lease_expires_at = now, None
            if job.cancel_requested:
                job.status, job.finished_at = "cancelled", now
            else:
                job.status, job.worker_id = "queued", None
                job.attempts = max(job.attempts - 1, 0)
            return _info(job, _progress(s, job_id))

    def record_dataset(self, job_id: int, facts: DatasetFacts) -> None:
        """Keep what a worker learnt about the job's dataset (:attr:`JobInfo.dataset_facts`).

        Recording the same facts again changes nothing; different facts (the data changed
        between attempts) replace them.

        Raises:
            JobNotFoundError: no job has that id.

        Example:
            >>> facts = DatasetFacts(10, (1, 8, 8), (0.3,), (0.2,))
            >>> store.record_dataset(1, facts)  # doctest: +SKIP
        """
        stored = json.dumps(facts.to_dict(), sort_keys=True)
        with self.session(write=True) as s:
            job = _job(s, job_id, lock=True)
            if job.dataset_facts != stored:
                job.dataset_facts, job.updated_at = stored, db_now(s)

    def record_plan(self, job_id: int, phase: Phase, details: dict[str, Any]) -> None:
        """Keep what a worker planned for ``phase`` (``confirm`` or ``ablate``) of the job:
        ``details`` (JSON-able, with the phase's ``total`` trials) becomes
        ``JobInfo.plan[phase]``, unless the phase has a plan already: the first plan stays, so
        a resumed job, or a second worker racing for it, keeps the sizes it was given.

        Raises:
            ValueError: ``phase`` is not a planned phase.
            JobNotFoundError: no job has that id.

        Example:
            >>> store.record_plan(1, "confirm", {"total": 6})  # doctest: +SKIP
            >>> store.get_job(1).plan  # doctest: +SKIP
            {'confirm': {'total': 6}}
        """
        if phase not in _PLANNED:
            raise ValueError(f"phase {phase!r} is not one of {', '.join(_PLANNED)}")
        with self.session(write=True) as s:
            job = _job(s, job_id, lock=True)
            plan = json.loads(job.plan) if job.plan else {}
            if phase not in plan:
                plan[phase] = details
                job.plan, job.updated_at = json.dumps(plan, sort_keys=True), db_now(s)

    # -- candidates: the runner's writes ---------------------------------------------------

    def start_candidate(
        self,
        *,
        job_id: int,
        trial_number: int,
        optuna_trial_id: int | None,
        arch: ArchSpec,
        cost: Cost,
        seed: int,
        attempt: int,
        worker_id: str | None,
        epochs_total: int,
        phase: Phase = "search",
        replicate: int = 0,
        reference: int | None = None,
        cache_key: str | None = None,
        cached_from: int | None = None,
        gpu_share: float | None = None,
    ) -> int:
        """Record that a trial started training ``arch``; returns the candidate id.

        Calling it again for the same ``(job_id, trial_number)`` (the trial re-run after a
        crash) resets that candidate to ``running`` and forgets its curve and metrics.

        ``phase``, ``replicate`` and ``reference`` say which of the job's phases asked for the
        trial, which seed of the architecture it is and (ablate) whose trial it varies;
        ``cache_key`` is :func:`search.cache.cache_key` of the training; ``gpu_share`` the
        share of a GPU the trial was given (``None`` on the CPU). With ``cached_from``
        (a :meth:`find_cached` hit) nothing trains: the source's learning curve is copied to
        this candidate in the same transaction, and :meth:`finish_candidate` records its
        values.

        Raises:
            ValueError: an unknown phase or a negative replicate.
            LookupError: no candidate has the id ``cached_from``.

        Example:
            >>> cost = arch_cost(arch, input_shape=(1, 28, 28))  # doctest: +SKIP
            >>> cid = store.start_candidate(job_id=1, trial_number=0, optuna_trial_id=1,
            ...                             arch=arch, cost=cost, seed=0, attempt=1,
            ...                             worker_id="w1", epochs_total=2)  # doctest: +SKIP
        """
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} is not one of {', '.join(PHASES)}")
        if replicate < 0:
            raise ValueError(f"replicate {replicate} must be at least 0")
        with self.session(write=True) as s:
            source = None if cached_from is None else s.get(Candidate, cached_from)
            if cached_from is not None and source is None:
                raise LookupError(f"no candidate {cached_from} to copy a result from")
            values: dict[str, Any] = {
                "job_id": job_id,
                "trial_number": trial_number,
                "optuna_trial_id": optuna_trial_id,
                "state": "running",
                "arch_json": arch.canonical_json(),
                "arch_hash": arch.hash(),
                "val_acc": None,
                "test_acc": None,
                "flops": cost.flops,
                "params": cost.params,
                "activation_bytes": cost.activation_bytes,
                "receptive_field": cost.receptive_field,
                "latency_ms": None,
                "train_s": None,
                # a copied curve is complete at once
                "epochs_done": 0 if source is None else source.epochs_done,
                "epochs_total": epochs_total,
                "device": None,
                "seed": seed,
                "attempt": attempt,
                "worker_id": worker_id,
                "error": None,
                "started_at": db_now(s),
                "finished_at": None,
                "phase": phase,
                "replicate": replicate,
                "reference": reference,
                "cache_key": cache_key,
                "cached_from": cached_from,
                "latency_rel": None,
                "gpu_share": gpu_share,
                "stopped_at": None,
            }
            upsert = _insert_for(s)(Candidate).values(**values)
            upsert = upsert.on_conflict_do_update(
                index_elements=["job_id", "trial_number"],
                set_={k: upsert.excluded[k] for k in values if k not in ("job_id", "trial_number")},
            )
            candidate_id: int = s.execute(upsert.returning(Candidate.id)).scalar_one()
            s.execute(delete(Epoch).where(Epoch.candidate_id == candidate_id))
            if source is not None:
                curve = (Epoch.epoch, Epoch.val_acc, Epoch.train_loss, Epoch.seconds)
                s.execute(
                    insert(Epoch).from_select(
                        ["candidate_id", *(c.key for c in curve)],
                        select(literal(candidate_id), *curve).where(
                            Epoch.candidate_id == source.id
                        ),
                    )
                )
            s.execute(delete(Stage).where(Stage.candidate_id == candidate_id))
            s.add_all(
                Stage(candidate_id=candidate_id, stage=i, **{k: getattr(st, k) for k in STAGE_KEYS})
                for i, st in enumerate(arch.stages, 1)
            )
            return candidate_id

    def record_epoch(
        self,
        *,
        candidate_id: int,
        epoch: int,
        val_acc: float | None,
        train_loss: float | None,
        seconds: float | None,
    ) -> None:
        """Record (or overwrite) epoch ``epoch`` (from 1) of a candidate's learning curve.

        The candidate's ``epochs_done`` and ``val_acc`` follow its latest epoch.

        Raises:
            LookupError: no candidate has that id.

        Example:
            >>> store.record_epoch(candidate_id=cid, epoch=1, val_acc=0.91, train_loss=0.4,
            ...                    seconds=1.2)  # doctest: +SKIP
        """
        if epoch < 1:
            raise ValueError(f"epoch {epoch} must be at least 1")
        with self.session(write=True) as s:
            candidate = _candidate(s, candidate_id)
            insert = _insert_for(s)(Epoch).values(
                candidate_id=candidate_id,
                epoch=epoch,
                val_acc=val_acc,
                train_loss=train_loss,
                seconds=seconds,
            )
            s.execute(
                insert.on_conflict_do_update(
                    index_elements=["candidate_id", "epoch"],
                    set_={k: insert.excluded[k] for k in ("val_acc", "train_loss", "seconds")},
                )
            )
            if epoch >= candidate.epochs_done:
                candidate.epochs_done = epoch
                candidate.val_acc = val_acc

    def finish_candidate(
        self,
        *,
        candidate_id: int,
        state: CandidateState,
        val_acc: float | None = None,
        test_acc: float | None = None,
        latency_ms: float | None = None,
        train_s: float | None = None,
        device: str | None = None,
        error: str | None = None,
        epochs_done: int | None = None,
        cache_key: str | None = None,
        latency_rel: float | None = None,
        stopped_at: int | None = None,
    ) -> None:
        """End a candidate as ``complete``, ``pruned`` or ``failed`` with its final metrics.

        A metric left ``None`` keeps its stored value (``val_acc`` that of the latest epoch);
        so does ``cache_key``, which a training that ran on another device type than planned
        replaces with the key of what ran. ``stopped_at`` (state ``pruned`` only) is the epoch
        at which early stopping stopped the candidate: such a candidate counts toward its
        job's search budget.

        Raises:
            LookupError: no candidate has that id.

        Example:
            >>> store.finish_candidate(candidate_id=cid, state="complete", val_acc=0.93,
            ...                        test_acc=0.92, device="cpu")  # doctest: +SKIP
        """
        if state not in FINAL_CANDIDATE_STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(FINAL_CANDIDATE_STATES)}")
        if stopped_at is not None and state != "pruned":
            raise ValueError(f"stopped_at {stopped_at} is for pruned candidates, not {state}")
        with self.session(write=True) as s:
            candidate = _candidate(s, candidate_id)
            candidate.state, candidate.error = state, error
            candidate.stopped_at = stopped_at
            candidate.finished_at = db_now(s)
            for key, value in (
                ("val_acc", val_acc),
                ("test_acc", test_acc),
                ("latency_ms", latency_ms),
                ("train_s", train_s),
                ("device", device),
                ("epochs_done", epochs_done),
                ("cache_key", cache_key),
                ("latency_rel", latency_rel),
            ):
                if value is not None:
                    setattr(candidate, key, value)

    def fail_running_candidates(self, *, job_id: int, error: str) -> int:
        """Mark the job's ``running`` candidates ``failed`` with ``error`` (their worker died);
        returns how many.

        Example:
            >>> store.fail_running_candidates(job_id=1, error="worker lost")  # doctest: +SKIP
            2
        """
        with self.session(write=True) as s:
            stale = s.scalars(
                select(Candidate)
                .where(Candidate.job_id == job_id, Candidate.state == "running")
                .with_for_update()
            ).all()
            now = db_now(s)
            for candidate in stale:
                candidate.state, candidate.error, candidate.finished_at = "failed", error, now
            return len(stale)

    def find_cached(self, cache_key: str) -> CachedResult | None:
        """The result a training with ``cache_key`` (:func:`search.cache.cache_key`) may reuse,
        from any job: the oldest candidate with that key that is complete, fully trained (a
        pruned or cancelled one never is: the schedule is planned over all epochs) and trained
        itself, not served by the cache; ``None`` if there is none.

        Example:
            >>> hit = store.find_cached(key)  # doctest: +SKIP
            >>> hit.candidate_id, hit.val_acc  # doctest: +SKIP
            (12, 0.934)
        """
        return self._find_result(
            Candidate.cache_key == cache_key,
            Candidate.state == "complete",
            Candidate.epochs_done == Candidate.epochs_total,
        )

    def find_stopped(self, cache_key: str, *, job_id: int) -> CachedResult | None:
        """The training with ``cache_key`` that early stopping stopped in job ``job_id`` (its
        ``stopped_at`` set), trained itself; ``None`` if there is none. A search that proposes
        it again learns nothing new by training it: its rungs would see the same curve. Only
        within the job: another job's rungs held other candidates.

        Example:
            >>> store.find_stopped(key, job_id=3).stopped_at  # doctest: +SKIP
            1
        """
        return self._find_result(
            Candidate.cache_key == cache_key,
            Candidate.job_id == job_id,
            Candidate.state == "pruned",
            Candidate.stopped_at.is_not(None),
        )

    def _find_result(self, *where: ColumnElement[bool]) -> CachedResult | None:
        query = (
            select(
                Candidate.id.label("candidate_id"),
                Candidate.job_id,
                Candidate.trial_number,
                Candidate.val_acc,
                Candidate.test_acc,
                Candidate.latency_ms,
                Candidate.train_s,
                Candidate.device,
                Candidate.epochs_done,
                Candidate.latency_rel,
                Candidate.stopped_at,
            )
            .where(*where, Candidate.cached_from.is_(None))
            .order_by(Candidate.id)
            .limit(1)
        )
        with self.session() as s:
            row = s.execute(query).mappings().first()
        return None if row is None else CachedResult(**row)

    def list_candidates(
        self, job_id: int, *, state: CandidateState | None = None
    ) -> list[CandidateInfo]:
        """The job's candidates in trial order, optionally only those in ``state``.

        Example:
            >>> [c.arch_hash for c in store.list_candidates(1, state="complete")]  # doctest: +SKIP
        """
        with self.session() as s:
            rows = s.execute(candidates_query(job_id, state)).mappings().all()
        return [CandidateInfo(**row) for row in rows]

    # -- workers --------------------------------------------------------------------------

    def register_worker(
        self, worker_id: str | None = None, *, lease_seconds: float = DEFAULT_LEASE_S
    ) -> str:
        """Record a worker process (this one) as ``idle``; returns its id.

        Rows of workers not heard from for :data:`WORKER_RETENTION` are deleted here: a fleet
        that starts workers every day would otherwise keep every one it ever ran.

        Example:
            >>> worker_id = store.register_worker(lease_seconds=60)  # doctest: +SKIP
        """
        worker_id = worker_id or new_worker_id()
        _lease(lease_seconds)
        with self.session(write=True) as s:
            now = db_now(s)
            s.execute(delete(Worker).where(Worker.last_heartbeat < now - WORKER_RETENTION))
            worker = _worker_row(s, worker_id, "idle", None, now)
            worker.hostname, worker.pid, worker.started_at = socket.gethostname(), os.getpid(), now
            worker.lease_seconds = lease_seconds
        return worker_id

    def worker_heartbeat(self, worker_id: str) -> None:
        """Record that ``worker_id`` is alive and idle (between jobs)."""
        with self.session(write=True) as s:
            _worker_row(s, worker_id, "idle", None, db_now(s))

    def worker_stopped(self, worker_id: str) -> None:
        """Mark ``worker_id`` as ``stopped`` (a clean exit)."""
        with self.session(write=True) as s:
            if s.get(Worker, worker_id) is not None:
                _worker_row(s, worker_id, "stopped", None, db_now(s))

    def list_workers(self) -> list[WorkerInfo]:
        """Every registered worker, most recently heard from first.

        A worker that last said it was idle or busy but whose heartbeat is older than its lease
        is reported ``lost`` (killed, hung, or cut off from the database).

        Example:
            >>> [(w.id, w.status) for w in store.list_workers()]  # doctest: +SKIP
            [('host-12-ab12cd', 'busy'), ('host-9-0f0f0f', 'lost')]
        """
        with self.session() as s:
            now = db_now(s)
            rows = s.scalars(select(Worker).order_by(Worker.last_heartbeat.desc())).all()
            return [
                WorkerInfo(
                    w.id,
                    w.hostname,
                    w.pid,
                    _worker_status(w, now),
                    w.current_job_id,
                    w.started_at,
                    w.last_heartbeat,
                    w.lease_seconds,
                )
                for w in rows
            ]


def _lease(seconds: float) -> timedelta:
    if not seconds > 0:
        raise ValueError(f"lease_seconds {seconds!r} must be positive")
    return timedelta(seconds=seconds)


def _lease_lost(job: Job) -> str:
    return (
        f"worker {job.worker_id} lost its lease (expired "
        f"{_iso(job.lease_expires_at)}) on attempt {job.attempts}"
    )


def _worker_row(
    s: Session, worker_id: str, status: WorkerStatus, job_id: int | None, now: datetime
) -> Worker:
    worker = s.get(Worker, worker_id)
    if worker is None:  # e.g. its row was pruned while it ran: it is alive, so record it again
        worker = Worker(
            id=worker_id, hostname=socket.gethostname(), pid=os.getpid(), started_at=now
        )
        s.add(worker)
    worker.status, worker.current_job_id, worker.last_heartbeat = status, job_id, now
    return worker


def _worker_status(worker: Worker, now: datetime) -> WorkerStatus:
    lease = timedelta(seconds=worker.lease_seconds or DEFAULT_LEASE_S)
    if worker.status in ("idle", "busy") and worker.last_heartbeat + lease < now:
        return "lost"
    return worker.status


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "?"


def _job(s: Session, job_id: int, *, lock: bool = False) -> Job:
    job = s.get(Job, job_id, with_for_update=lock or None)
    if job is None:
        raise JobNotFoundError(f"no job {job_id}")
    return job


def _held(s: Session, job_id: int, worker_id: str) -> Job:
    job = _job(s, job_id, lock=True)
    if job.status != "running" or job.worker_id != worker_id:
        raise LeaseLostError(
            f"job {job_id} is no longer held by worker {worker_id} "
            f"(status {job.status}, worker {job.worker_id})"
        )
    return job


@dataclass
class _Counts:
    """A job's candidates counted by phase and outcome (:func:`_counts`)."""

    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    trained: int = 0
    cached: int = 0
    stopped: int = 0


def _counts(s: Session, job_ids: list[int] | None) -> dict[int, _Counts]:
    """The candidate counts of the given jobs (every job's with ``None``), in one query."""
    cached = case((Candidate.cached_from.is_(None), 0), else_=1)
    stopped = case((Candidate.stopped_at.is_(None), 0), else_=1)
    query = select(
        Candidate.job_id, Candidate.phase, Candidate.state, cached, stopped, func.count()
    ).group_by(Candidate.job_id, Candidate.phase, Candidate.state, cached, stopped)
    if job_ids is not None:
        query = query.where(Candidate.job_id.in_(job_ids))
    out: dict[int, _Counts] = {}
    for job_id, phase, state, from_cache, early, n in s.execute(query):
        counts = out.setdefault(job_id, _Counts())
        # a candidate early stopping stopped was evaluated: it uses its share of the budget
        if state == "complete" or (state == "pruned" and early):
            counts.done[phase] = counts.done.get(phase, 0) + n
        if state == "pruned" and early:
            counts.stopped += n
        elif state == "failed":
            counts.failed[phase] = counts.failed.get(phase, 0) + n
        if from_cache and state == "complete":
            counts.cached += n
        elif not from_cache and state in ("complete", "pruned"):
            counts.trained += n
    return out


def _progress(s: Session, job_id: int) -> _Counts:
    return _counts(s, [job_id]).get(job_id, _Counts())


def _phases(
    job: Job, config: JobConfig, plan: dict[str, Any], counts: _Counts
) -> tuple[PhaseProgress, ...]:
    """One progress per phase the job has: the search's size is its trials, the others' is
    what the worker planned (``None`` until then)."""
    has = {"search": True, "confirm": config.seeds > 1, "ablate": config.ablate != "none"}
    return tuple(
        PhaseProgress(
            name=phase,
            done=counts.done.get(phase, 0),
            total=job.trials_total if phase == "search" else plan.get(phase, {}).get("total"),
            failed=counts.failed.get(phase, 0),
        )
        for phase in PHASES
        if has[phase]
    )


def _candidate(s: Session, candidate_id: int) -> Candidate:
    candidate = s.get(Candidate, candidate_id, with_for_update=True)
    if candidate is None:
        raise LookupError(f"no candidate {candidate_id}")
    return candidate


def _insert_for(s: Session) -> Any:
    # the dialects' INSERT, for ON CONFLICT DO UPDATE (an upsert in one statement)
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def _study_name(s: Session, job_id: int) -> str:
    name = f"poolstride-job-{job_id}"
    # Job ids restart when poolstride's tables are recreated, but Optuna's studies stay: never
    # hand a new job an old study's trials.
    conn = s.connection()
    if (
        inspect(conn).has_table("studies")
        and conn.execute(text("SELECT 1 FROM studies WHERE study_name = :n"), {"n": name}).first()
    ):
        name = f"{name}-{secrets.token_hex(4)}"
    return name


def _info(job: Job, counts: _Counts) -> JobInfo:
    config = JobConfig.from_dict(json.loads(job.config))
    plan: dict[str, Any] | None = json.loads(job.plan) if job.plan else None
    return JobInfo(
        id=job.id,
        name=job.name,
        status=job.status,
        priority=job.priority,
        study_name=job.study_name,
        config=config,
        trials_done=counts.done.get("search", 0),
        trials_total=job.trials_total,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        error=job.error,
        cancel_requested=job.cancel_requested,
        worker_id=job.worker_id,
        lease_expires_at=job.lease_expires_at,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        dataset_facts=(
            DatasetFacts.from_dict(json.loads(job.dataset_facts)) if job.dataset_facts else None
        ),
        trained=counts.trained,
        cached=counts.cached,
        stopped=counts.stopped,
        phases=_phases(job, config, plan or {}, counts),
        plan=plan,
    )
