"""The dashboard's data: a read-only store per database URL and cached wrappers of ``search/``.

Pages never query the database themselves. Every helper here takes the database URL as its first
argument, so Streamlit's caches are keyed by ``(url, job_id, ...)``. The queue (jobs, workers)
expires after :data:`TTL_S` seconds; a job's data is keyed by :func:`version` as well, so a
finished job is read once per process and a running one at most every :data:`TTL_S` seconds.
At 100k candidates, pages ask for the columns and rows they draw, never more.

The database is opened read-only (``Store(url, read_only=True)``): a SQLite file with
``mode=ro``, so its bytes and journal mode stay as they are, PostgreSQL sessions with every
transaction read-only. A dashboard bug can show wrong figures but can never change a study.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import streamlit as st

from search.analysis import (
    ablation_effects,
    describe_effect,
    paired_effects,
    recommendations,
    stage_analysis,
)
from search.pareto import architecture_means, hypervolume_history
from search.query import Front, count_candidates, load_candidates, load_front, stage_columns
from search.store import (
    JobInfo,
    SchemaError,
    Store,
    WorkerInfo,
    check_schema,
    current_revision,
    display_url,
    epochs_frame,
    missing_sqlite_file,
    normalize_url,
    resolve_db_url,
)
from search.vocabulary import FINAL_STATUSES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "POINT_METRICS",
    "TTL_S",
    "analysis",
    "candidates",
    "check",
    "count",
    "database_url",
    "epochs",
    "front",
    "hypervolume_curve",
    "jobs",
    "means",
    "means_rows",
    "points",
    "store",
    "verdicts",
    "version",
    "workers",
]

# Short enough that a page refreshed while a job runs shows its new trials, long enough that
# the widgets of one page view (each a rerun) do not reload 100k candidates.
TTL_S = 5.0


def database_url() -> str:
    """The database the dashboard shows: ``$POOLSTRIDE_DB`` (``poolstride dashboard`` sets it
    for the Streamlit process), else ``poolstride.db`` in the current folder."""
    return normalize_url(resolve_db_url(None))


@st.cache_resource(show_spinner=False)
def store(url: str) -> Store:
    """The read-only :class:`Store` on ``url``, one per process (its engine pools connections).

    Raises:
        SchemaError: a SQLite file that does not exist (or is empty).
    """
    # Said here, in words that name the fix: SQLite itself would only be "unable to open".
    if missing_sqlite_file(url):
        raise SchemaError(
            f"database {display_url(url)} does not exist: run "
            "`poolstride db upgrade`, or pass the right --db"
        )
    return Store(url, read_only=True)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def check(url: str) -> str:
    """Check the database's poolstride schema; returns its revision.

    Cached for :data:`TTL_S` only: a database upgraded or replaced under a running dashboard
    is noticed at the next refresh.

    Raises:
        SchemaError: no poolstride schema, or not the one this code reads.
    """
    engine = store(url).engine
    check_schema(engine)
    return current_revision(engine) or ""


@st.cache_data(ttl=TTL_S, show_spinner=False)
def jobs(url: str) -> list[JobInfo]:
    """Every job, oldest first, with its progress."""
    return store(url).list_jobs()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def workers(url: str) -> list[WorkerInfo]:
    """Every registered worker, most recently heard from first."""
    return store(url).list_workers()


def version(job: JobInfo) -> str:
    """The cache key of a job's data: what changes when its candidates can have changed.

    A finished job's data never changes, so its key is fixed and its frames are read once per
    process. A queued or running job's key also carries the current :data:`TTL_S` time slot,
    so its data is re-read at most every few seconds.

    Example:
        >>> from types import SimpleNamespace
        >>> version(SimpleNamespace(status="succeeded", trials_done=8))
        'succeeded/8'
    """
    key = f"{job.status}/{job.trials_done}"
    if job.status in FINAL_STATUSES:
        return key
    return f"{key}/{int(time.time() // TTL_S)}"


# Frames of 100k candidates are tens of MB: keep a few jobs' worth, not every view ever made.
_FRAMES = 32
# What a point's hover shows besides its objectives.
POINT_METRICS: tuple[str, ...] = ("val_acc", "test_acc", "flops", "params")


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def candidates(
    url: str,
    job_id: int,
    version: str,
    where: tuple[str, ...] = (),
    sort: str | None = None,
    limit: int | None = None,
    columns: tuple[str, ...] | None = None,
    trials: tuple[int, ...] | None = None,
) -> pd.DataFrame:
    """The job's candidates, read by :func:`search.query.load_candidates` (same arguments:
    the CLI's filter grammar, sort key and limit, run in the database).

    Raises:
        ValueError: a malformed filter or sort key (the message is one line for the user).
    """
    return load_candidates(
        store(url), job_id, where=where, sort=sort, limit=limit, columns=columns, trials=trials
    )


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def count(url: str, job_id: int, version: str, where: tuple[str, ...] = ()) -> int:
    """How many of the job's candidates match ``where``, counted in the database
    (:func:`search.query.count_candidates`).

    Raises:
        ValueError: a malformed filter (the message is one line for the user).
    """
    return count_candidates(store(url), job_id, where=where)


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def front(url: str, job_id: int, version: str, objectives: tuple[str, ...]) -> Front:
    """The job's front of per-architecture means and its hypervolume, as ``poolstride pareto``
    reports them (:func:`search.query.load_front`): the front's rows, best first by the
    first objective, then those whose mean fell off it (``on_front`` false)."""
    return load_front(store(url), job_id, objectives)


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def points(url: str, job_id: int, version: str, objectives: tuple[str, ...]) -> pd.DataFrame:
    """Every complete candidate with the objectives, the metrics a point's hover shows and
    what groups it by architecture and seed; no stage columns, so it stays a narrow read at
    100k candidates."""
    wanted = tuple(dict.fromkeys((*objectives, *POINT_METRICS, "arch_hash", "seed")))
    return load_candidates(store(url), job_id, where=("state=complete",), columns=wanted)


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def means(url: str, job_id: int, version: str, objectives: tuple[str, ...]) -> pd.DataFrame:
    """One row per complete architecture, its measured metrics averaged over its seeds
    (:func:`search.pareto.architecture_means` of :func:`points`), in trial order."""
    return architecture_means(points(url, job_id, version, objectives), objectives)


def means_rows(
    url: str, job_id: int, version: str, objectives: tuple[str, ...], trials: tuple[int, ...]
) -> pd.DataFrame:
    """Full rows (stage choices, every column) of the architectures whose first trial is in
    ``trials``, with their metrics the means over seeds of :func:`means`: what a page draws
    for architectures it picked from the narrow means."""
    mean = means(url, job_id, version, objectives)
    mean = mean[mean["trial"].isin(trials)]
    rows = candidates(url, job_id, version, trials=trials)
    kept = [c for c in rows.columns if c == "trial" or c not in mean.columns]
    return rows[kept].merge(mean, on="trial")


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def hypervolume_curve(
    url: str, job_id: int, version: str, objectives: tuple[str, ...]
) -> pd.DataFrame:
    """Hypervolume and front size as each architecture's first trial ends, over the means
    (:func:`search.pareto.hypervolume_history` of :func:`means`): its last value is the
    front's hypervolume."""
    return hypervolume_history(means(url, job_id, version, objectives), objectives)


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def analysis(
    url: str, job_id: int, version: str, n_stages: int, objectives: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-stage table (:func:`search.analysis.stage_analysis`) and the matched-pair
    effects (:func:`search.analysis.paired_effects`, with each row's sentence in a
    ``sentence`` column) of the job's complete candidates, from one read."""
    wanted = (*stage_columns(n_stages), *dict.fromkeys(("val_acc", "flops", "params", *objectives)))
    frame = candidates(url, job_id, version, where=("state=complete",), columns=wanted)
    effects = paired_effects(frame)
    effects["sentence"] = [describe_effect(row) for row in effects.to_dict("records")]
    return stage_analysis(frame, objectives=objectives), effects


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def verdicts(
    url: str,
    job_id: int,
    version: str,
    n_stages: int,
    references: tuple[int, ...],
    cost: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The one-choice effects around ``references`` (:func:`search.analysis.ablation_effects`,
    the primary reference first) and the per-stage recommendations around the primary one
    (:func:`search.analysis.recommendations`), as ``poolstride analyze`` and the report say
    them, from one read of the columns they need."""
    wanted = (
        *stage_columns(n_stages),
        *dict.fromkeys(("val_acc", "flops", "params", cost, "arch_hash", "seed")),
    )
    frame = candidates(url, job_id, version, where=("state=complete",), columns=wanted)
    effects = ablation_effects(frame, references=references, cost=cost)
    return effects, recommendations(frame, effects, cost=cost)


@st.cache_data(max_entries=_FRAMES, show_spinner=False)
def epochs(url: str, job_id: int, version: str, trials: tuple[int, ...]) -> pd.DataFrame:
    """The learning curves of the job's ``trials`` only: trial_number, epoch, val_acc,
    train_loss, seconds (:func:`search.store.epochs_frame`)."""
    return epochs_frame(store(url), job_id, trials=trials)
