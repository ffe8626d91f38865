"""Candidates, their stages and learning curves: the writes the runner makes, and reads.

The writes are idempotent, so a retried call (a worker that crashed and resumed, a repeated
message) counts nothing twice: candidates are keyed by ``(job_id, trial_number)`` and epochs by
``(candidate_id, epoch)``. Each write function takes a :class:`Store` (one transaction of its
own) or a :class:`Session` (it joins the caller's transaction).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from search.cost import Cost
from search.space import ArchSpec
from search.store._engine import db_now
from search.store._models import Candidate, Epoch, Stage
from search.store._types import CandidateInfo
from search.vocabulary import CANDIDATE_STATES, FINAL_CANDIDATE_STATES, STAGE_KEYS

if TYPE_CHECKING:
    import pandas as pd

    from search.store._store import Store

__all__ = [
    "candidates_frame",
    "epochs_frame",
    "fail_running_candidates",
    "finish_candidate",
    "list_candidates",
    "record_epoch",
    "start_candidate",
    "trials_done",
]


def start_candidate(
    target: Store | Session,
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
) -> int:
    """Record that a trial started training ``arch``; returns the candidate id.

    Calling it again for the same ``(job_id, trial_number)`` (the trial re-run after a crash)
    resets that candidate to ``running`` and forgets its curve and metrics.

    Example:
        >>> cost = arch_cost(arch, input_shape=(1, 28, 28))  # doctest: +SKIP
        >>> cid = start_candidate(store, job_id=1, trial_number=0, optuna_trial_id=1, arch=arch,
        ...                       cost=cost, seed=0, attempt=1, worker_id="w1",
        ...                       epochs_total=2)  # doctest: +SKIP
    """
    with _scope(target) as s:
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
            "epochs_done": 0,
            "epochs_total": epochs_total,
            "device": None,
            "seed": seed,
            "attempt": attempt,
            "worker_id": worker_id,
            "error": None,
            "started_at": db_now(s),
            "finished_at": None,
        }
        insert = _insert_for(s)(Candidate).values(**values)
        insert = insert.on_conflict_do_update(
            index_elements=["job_id", "trial_number"],
            set_={k: insert.excluded[k] for k in values if k not in ("job_id", "trial_number")},
        )
        candidate_id: int = s.execute(insert.returning(Candidate.id)).scalar_one()
        s.execute(delete(Epoch).where(Epoch.candidate_id == candidate_id))
        s.execute(delete(Stage).where(Stage.candidate_id == candidate_id))
        s.add_all(
            Stage(candidate_id=candidate_id, stage=i, **{k: getattr(st, k) for k in STAGE_KEYS})
            for i, st in enumerate(arch.stages, 1)
        )
        return candidate_id


def record_epoch(
    target: Store | Session,
    *,
    candidate_id: int,
    epoch: int,
    val_acc: float | None,
    train_loss: float | None,
    seconds: float | None,
) -> None:
    """Record (or overwrite) epoch ``epoch`` (from 1) of a candidate's learning curve.

    The candidate's ``epochs_done`` and ``val_acc`` follow its latest epoch.

    Example:
        >>> record_epoch(store, candidate_id=cid, epoch=1, val_acc=0.91, train_loss=0.4,
        ...              seconds=1.2)  # doctest: +SKIP
    """
    if epoch < 1:
        raise ValueError(f"epoch {epoch} must be at least 1")
    with _scope(target) as s:
        candidate = _candidate(s, candidate_id)
        values = {
            "candidate_id": candidate_id,
            "epoch": epoch,
            "val_acc": val_acc,
            "train_loss": train_loss,
            "seconds": seconds,
        }
        insert = _insert_for(s)(Epoch).values(**values)
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
    target: Store | Session,
    *,
    candidate_id: int,
    state: str,
    val_acc: float | None = None,
    test_acc: float | None = None,
    latency_ms: float | None = None,
    train_s: float | None = None,
    device: str | None = None,
    error: str | None = None,
    epochs_done: int | None = None,
) -> None:
    """End a candidate as ``complete``, ``pruned`` or ``failed`` with its final metrics.

    A metric left ``None`` keeps its stored value (``val_acc`` that of the latest epoch).

    Example:
        >>> finish_candidate(store, candidate_id=cid, state="complete", val_acc=0.93,
        ...                  test_acc=0.92, train_s=3.1, device="cuda:0")  # doctest: +SKIP
    """
    if state not in FINAL_CANDIDATE_STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(FINAL_CANDIDATE_STATES)}")
    with _scope(target) as s:
        candidate = _candidate(s, candidate_id)
        candidate.state, candidate.error = state, error
        candidate.finished_at = db_now(s)
        for key, value in (
            ("val_acc", val_acc),
            ("test_acc", test_acc),
            ("latency_ms", latency_ms),
            ("train_s", train_s),
            ("device", device),
            ("epochs_done", epochs_done),
        ):
            if value is not None:
                setattr(candidate, key, value)


def fail_running_candidates(target: Store | Session, *, job_id: int, error: str) -> int:
    """Mark the job's ``running`` candidates ``failed`` with ``error`` (their worker died);
    returns how many.

    Example:
        >>> fail_running_candidates(store, job_id=1, error="worker lost")  # doctest: +SKIP
        2
    """
    with _scope(target) as s:
        stale = s.scalars(
            select(Candidate)
            .where(Candidate.job_id == job_id, Candidate.state == "running")
            .with_for_update()
        ).all()
        now = db_now(s)
        for candidate in stale:
            candidate.state, candidate.error, candidate.finished_at = "failed", error, now
        return len(stale)


def trials_done(target: Store | Session, job_id: int) -> int:
    """How many of the job's candidates are ``complete``.

    Example:
        >>> trials_done(store, job_id=1)  # doctest: +SKIP
        12
    """
    with _scope(target, write=False) as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(Candidate)
                .where(Candidate.job_id == job_id, Candidate.state == "complete")
            )
            or 0
        )


def list_candidates(
    store: Store,
    job_id: int,
    *,
    state: str | None = None,
) -> list[CandidateInfo]:
    """The job's candidates in trial order, optionally only those in ``state``.

    Example:
        >>> [c.arch_hash for c in list_candidates(store, 1, state="complete")]  # doctest: +SKIP
    """
    with store.session() as s:
        rows = s.execute(_candidates_query(job_id, state)).mappings().all()
    return [CandidateInfo(**row) for row in rows]


def candidates_frame(store: Store, job_id: int, *, state: str | None = None) -> pd.DataFrame:
    """The job's candidates as a DataFrame, with flat per-stage columns (``s1.downsample``…).

    Example:
        >>> df = candidates_frame(store, 1)  # doctest: +SKIP
        >>> df[df["s2.downsample"] == "max"]["val_acc"].mean()  # doctest: +SKIP
    """
    import pandas as pd  # only the frame readers need it; keeps the CLI and workers quick to start

    with store.session() as s:
        rows = s.execute(_candidates_query(job_id, state)).mappings().all()
        stages = (
            s.execute(
                select(Stage)
                .join(Candidate, Candidate.id == Stage.candidate_id)
                .where(Candidate.job_id == job_id)
            )
            .scalars()
            .all()
        )
    flat: dict[int, dict[str, Any]] = {}
    for st in stages:
        flat.setdefault(st.candidate_id, {}).update(
            {f"s{st.stage}.{k}": getattr(st, k) for k in STAGE_KEYS}
        )
    columns = [c.name for c in Candidate.__table__.columns]
    n_stages = max((int(k[1 : k.index(".")]) for d in flat.values() for k in d), default=0)
    stage_columns = [f"s{i}.{k}" for i in range(1, n_stages + 1) for k in STAGE_KEYS]
    records = [{**row, **flat.get(row["id"], {})} for row in rows]
    return pd.DataFrame.from_records(records, columns=columns + stage_columns)


def epochs_frame(
    store: Store, job_id: int, *, trials: Collection[int] | None = None
) -> pd.DataFrame:
    """The job's learning-curve points: trial number, epoch, val_acc, loss, seconds.

    ``trials`` reads only those trial numbers' curves (a page that draws five curves reads
    five).

    Example:
        >>> epochs_frame(store, 1).pivot(index="epoch", columns="trial_number",
        ...                              values="val_acc")  # doctest: +SKIP
    """
    query = (
        select(
            Epoch.candidate_id,
            Candidate.trial_number,
            Epoch.epoch,
            Epoch.val_acc,
            Epoch.train_loss,
            Epoch.seconds,
        )
        .join(Candidate, Candidate.id == Epoch.candidate_id)
        .where(Candidate.job_id == job_id)
        .order_by(Candidate.trial_number, Epoch.epoch)
    )
    if trials is not None:
        query = query.where(Candidate.trial_number.in_(sorted({int(t) for t in trials})))
    import pandas as pd

    with store.session() as s:
        result = s.execute(query)
        return pd.DataFrame.from_records(result.all(), columns=list(result.keys()))


@contextmanager
def _scope(target: Store | Session, *, write: bool = True) -> Iterator[Session]:
    if isinstance(target, Session):
        yield target
    else:
        with target.session(write=write) as session:
            yield session


def _insert_for(s: Session) -> Any:
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def _candidate(s: Session, candidate_id: int) -> Candidate:
    candidate = s.get(Candidate, candidate_id, with_for_update=True)
    if candidate is None:
        raise LookupError(f"no candidate {candidate_id}")
    return candidate


def _candidates_query(job_id: int, state: str | None) -> Select[Any]:
    query = (
        select(*Candidate.__table__.columns)
        .where(Candidate.job_id == job_id)
        .order_by(Candidate.trial_number)
    )
    if state is not None:
        if state not in CANDIDATE_STATES:
            raise ValueError(
                f"unknown candidate state {state!r} (expected one of {', '.join(CANDIDATE_STATES)})"
            )
        query = query.where(Candidate.state == state)
    return query
