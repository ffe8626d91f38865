"""The dashboard's tables, computed without Streamlit: number and time formats, the queue's job
and worker tables with each job's phase, the column order of the Trials table, and the words
around the verdicts (shared by the Stages page and the report).

Pages pass what they read to these functions and render the result; tests call them directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from search.query import parse_sort, parse_where
from search.space import SpaceConfig
from search.store import JobInfo, PhaseProgress, WorkerInfo
from search.vocabulary import STAGE_KEYS

__all__ = [
    "KEY_METRICS",
    "TIME_FORMAT",
    "fmt_int",
    "fmt_time",
    "fmt_value",
    "half_width_note",
    "job_errors",
    "jobs_table",
    "lost_warning",
    "phase_now",
    "phases_text",
    "skipped_lines",
    "trials_columns",
    "verdict_references",
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


def phase_now(job: JobInfo) -> PhaseProgress | None:
    """The phase a job is in: the first not :attr:`~search.store.PhaseProgress.ended` (a
    phase not yet planned has not), else its last; ``None`` for a job that reports no phases.

    Example:
        >>> from types import SimpleNamespace
        >>> phases = (PhaseProgress("search", 12, 12, 1), PhaseProgress("confirm", 4, 6, 0),
        ...           PhaseProgress("ablate", 0, None, 0))
        >>> phase_now(SimpleNamespace(phases=phases)).name
        'confirm'
    """
    return next((phase for phase in job.phases if not phase.ended), None) or (
        job.phases[-1] if job.phases else None
    )


def phases_text(job: JobInfo) -> str:
    """Every phase's progress in one line, ``?`` for the total of a phase not yet planned.

    Example:
        >>> from types import SimpleNamespace
        >>> phases_text(SimpleNamespace(phases=(PhaseProgress("search", 12, 12, 1),
        ...                                     PhaseProgress("ablate", 0, None, 0))))
        'search 12/12 (1 failed) · ablate 0/?'
    """
    return " · ".join(
        f"{p.name} {p.done}/{'?' if p.total is None else p.total}"
        + (f" ({p.failed} failed)" if p.failed else "")
        for p in job.phases
    )


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
                "phase": getattr(phase_now(j), "name", ""),
                "phases": phases_text(j),
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
            "phase",
            "phases",
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


def half_width_note(effects: pd.DataFrame) -> str | None:
    """What the verdicts' intervals can resolve: the typical (median) half-width of the
    effects' 95 % intervals, in points, as the effect that would be detected about half the
    time; ``None`` when no effect has an interval.

    Example:
        >>> half_width_note(pd.DataFrame({"half_width": [0.004, 0.006, float("nan")]}))
        'An effect of about ±0.5 pt would be detected about half the time.'
    """
    widths = effects["half_width"].dropna()
    if widths.empty:
        return None
    return (
        f"An effect of about ±{widths.median() * 100:.1f} pt would be detected about half the time."
    )


def skipped_lines(skipped: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per variant an ablation did not train, as its plan records them.

    Example:
        >>> skipped_lines([{"stage": 1, "choice": "kernel", "value": 5,
        ...                 "reason": "the space excludes kernel 5 at stage 1"}])
        ['stage 1: kernel 5: the space excludes kernel 5 at stage 1']
    """
    return [f"stage {s['stage']}: {s['choice']} {s['value']}: {s['reason']}" for s in skipped]


def verdict_references(job: JobInfo) -> tuple[tuple[int, ...], str | None]:
    """The reference trials of the job's ablation, the primary one first, or why it has none
    to show verdicts around: it ran no ablation (and how to get one), the ablation is not
    planned yet, or it had no reference to vary (a ``--reference`` trial that did not
    complete). Markdown: commands in backticks.

    Example:
        >>> from types import SimpleNamespace
        >>> job = SimpleNamespace(config=SimpleNamespace(ablate="all"),
        ...                       plan={"ablate": {"references": [12, 3], "skipped": []}})
        >>> verdict_references(job)
        ((12, 3), None)
        >>> verdict_references(SimpleNamespace(config=job.config, plan=None))[1]
        'The ablation is not planned yet: it follows the search and its confirmation.'
    """
    if job.config.ablate == "none":
        return (), (
            "This job ran no ablation, so no effect was measured. Submit it again with "
            "`--ablate downsample` or `--ablate all` (and `--seeds 3` or more, for intervals) "
            "to get a verdict on each alternative stage choice; the result cache makes what "
            "this job trained free."
        )
    planned = (job.plan or {}).get("ablate")
    if planned is None:
        return (), "The ablation is not planned yet: it follows the search and its confirmation."
    references = tuple(int(t) for t in planned.get("references", []))
    if not references:
        return (), "The ablation had no reference architecture to vary."
    return references, None
