"""The dashboard's tables, computed without Streamlit: number and time formats, the queue's job
and worker tables, and the column order of the Trials table.

Pages pass what they read to these functions and render the result; tests call them directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from search.query import parse_sort, parse_where
from search.space import SpaceConfig
from search.store import JobInfo, WorkerInfo
from search.vocabulary import STAGE_KEYS

__all__ = [
    "KEY_METRICS",
    "TIME_FORMAT",
    "fmt_int",
    "fmt_time",
    "fmt_value",
    "job_errors",
    "jobs_table",
    "lost_warning",
    "trials_columns",
    "workers_table",
]

# Month, day and minute: a queue row's three times fit a 1400 px window beside its progress.
# The year and the seconds rarely tell two jobs apart; the Queue page says the times are UTC.
TIME_FORMAT = "%m-%d %H:%M"
# What a user compares candidates by: first in the Trials table, after what they filter on.
KEY_METRICS = ("val_acc", "test_acc", "flops", "params")


def fmt_int(value: float | None) -> str:
    """``1,234,567`` style, ``-`` for missing values.

    Example:
        >>> fmt_int(1234567), fmt_int(None), fmt_int(float("nan"))
        ('1,234,567', '-', '-')
    """
    if value is None or math.isnan(value):
        return "-"
    return f"{int(value):,}"


def fmt_time(value: datetime | None) -> str:
    """A UTC timestamp as :data:`TIME_FORMAT`, ``-`` for a missing one.

    Example:
        >>> fmt_time(datetime(2026, 3, 4, 5, 6, 7)), fmt_time(None)
        ('03-04 05:06', '-')
    """
    return value.strftime(TIME_FORMAT) if value else "-"


def fmt_value(value: Any) -> str:
    """A table cell as text: integers with thousands separators, fractions to four places,
    ``-`` for missing values, anything else as ``str``.

    Example:
        >>> fmt_value(122176), fmt_value(0.36111), fmt_value(None), fmt_value("max")
        ('122,176', '0.3611', '-', 'max')
    """
    if hasattr(value, "item"):  # a numpy scalar from a DataFrame row
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def jobs_table(jobs: Sequence[JobInfo]) -> pd.DataFrame:
    """The Queue page's job table, newest job first.

    Errors are not a column: a traceback's first line is wider than the window, so the page
    shows each one in full below the table (:func:`job_errors`).

    Example:
        >>> jobs_table([]).columns.tolist()[:4]
        ['job', 'name', 'status', 'priority']
    """
    return pd.DataFrame.from_records(
        [
            {
                "job": j.id,
                "name": j.name,
                "status": j.status,
                "priority": j.priority,
                "progress": j.trials_done / j.trials_total if j.trials_total else 0.0,
                "trials": f"{j.trials_done}/{j.trials_total}",
                "attempts": f"{j.attempts}/{j.max_attempts}",
                "worker": j.worker_id or "",
                "created": fmt_time(j.created_at),
                "started": fmt_time(j.started_at),
                "finished": fmt_time(j.finished_at),
            }
            for j in reversed(jobs)
        ],
        columns=[
            "job",
            "name",
            "status",
            "priority",
            "progress",
            "trials",
            "attempts",
            "worker",
            "created",
            "started",
            "finished",
        ],
    )


def job_errors(jobs: Sequence[JobInfo]) -> list[tuple[str, str]]:
    """``(heading, error)`` of every job that has an error, newest first.

    Example:
        >>> job_errors([])
        []
    """
    return [(f"Job {j.id} ({j.name}, {j.status})", j.error) for j in reversed(jobs) if j.error]


def workers_table(workers: Sequence[WorkerInfo], now: datetime) -> pd.DataFrame:
    """The Queue page's worker table; ``seconds ago`` counts from ``now`` (UTC).

    Example:
        >>> from datetime import timezone
        >>> workers_table([], datetime.now(timezone.utc)).columns.tolist()[-2:]
        ['seconds ago', 'started']
    """
    return pd.DataFrame.from_records(
        [
            {
                "worker": w.id,
                "host": w.hostname,
                "pid": w.pid,
                "status": w.status,
                "job": w.current_job_id,
                "last heartbeat": fmt_time(w.last_heartbeat),
                "seconds ago": round((now - w.last_heartbeat).total_seconds()),
                "started": fmt_time(w.started_at),
            }
            for w in workers
        ],
        columns=[
            "worker",
            "host",
            "pid",
            "status",
            "job",
            "last heartbeat",
            "seconds ago",
            "started",
        ],
    )


def lost_warning(workers: Sequence[WorkerInfo]) -> str | None:
    """The Queue page's warning above the worker table, or ``None`` if no worker is lost.

    A lost worker's row reads like any other in the table; the warning is what makes a silent
    worker (killed, hung, cut off from the database) noticed.

    Example:
        >>> heard = datetime(2026, 3, 4, 5, 6, 7)
        >>> lost_warning([WorkerInfo("w-1", "box", 7, "lost", 2, heard, heard)])
        '1 worker lost: no heartbeat within its lease'
        >>> lost_warning([]) is None
        True
    """
    lost = sum(w.status == "lost" for w in workers)
    if not lost:
        return None
    if lost == 1:
        return "1 worker lost: no heartbeat within its lease"
    return f"{lost} workers lost: no heartbeat within their lease"


def trials_columns(
    columns: Iterable[str], space: SpaceConfig, where: Iterable[str] = (), sort: str | None = None
) -> list[str]:
    """The Trials table's columns, most telling first: ``trial``, the keys filtered or sorted
    on, :data:`KEY_METRICS`, ``state``, then every other column of ``columns``.

    Stage columns the job's space fixes (one allowed value, as widths and depths usually are)
    say the same on every row and are dropped, unless they are filtered or sorted on. So is
    ``candidate_id``, which only the database needs.

    Raises:
        ValueError: a malformed filter or sort key (as :func:`search.query.load_candidates`).

    Example:
        >>> space = SpaceConfig.from_mapping({"stages": 1, "widths": [8]})
        >>> stage = ["s1.downsample", "s1.kernel", "s1.skip", "s1.width", "s1.depth"]
        >>> cols = ["candidate_id", "trial", "state", *stage, "val_acc", "flops"]
        >>> trials_columns(cols, space, ["s1.width=8"], "-flops")
        ['trial', 's1.width', 'flops', 'val_acc', 'state', 's1.downsample', 's1.kernel', 's1.skip']
    """
    available = list(columns)
    named = [parse_where(w).key for w in where]
    if sort:
        named.append(parse_sort(sort)[0])
    fixed = {
        f"s{i}.{key}"
        for i, stage in enumerate(space.stages, 1)
        for key in STAGE_KEYS
        if len(getattr(stage, key)) == 1
    }
    first = ["trial", *named, *KEY_METRICS, "state"]
    rest = [c for c in available if c not in fixed and c != "candidate_id"]
    return [c for c in dict.fromkeys([*first, *rest]) if c in available]
