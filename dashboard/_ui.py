"""Widgets several pages share: the job picker and number formatting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import streamlit as st

from search.store import JobInfo

__all__ = ["fmt_int", "fmt_time", "pick_job"]


def pick_job(jobs: Sequence[JobInfo], *, need_trials: bool = True) -> JobInfo | None:
    """A job selectbox that follows the ``?job=ID`` query parameter and writes it back.

    The query parameter makes a page's address name its job, so a link (or the browser test)
    opens a job directly. Without one, the newest job with complete trials is shown.
    Returns ``None`` (having said why) when there is nothing to show.
    """
    shown = [j for j in jobs if j.trials_done > 0] if need_trials else list(jobs)
    if not shown:
        st.info(
            "No job has complete trials yet. `poolstride submit` queues a search, "
            "`poolstride worker` runs it."
        )
        return None
    by_id = {j.id: j for j in shown}
    ids = sorted(by_id, reverse=True)  # newest first
    wanted = st.query_params.get("job", "")
    default = int(wanted) if wanted.isdigit() and int(wanted) in by_id else ids[0]
    if wanted and wanted != str(default):
        st.warning(f"Job {wanted} has no complete trials or does not exist; showing job {default}.")
    job_id: int = st.selectbox(
        "Job",
        ids,
        index=ids.index(default),
        format_func=lambda i: (
            f"{i} · {by_id[i].name} · {by_id[i].status} · "
            f"{by_id[i].trials_done}/{by_id[i].trials_total} trials"
        ),
    )
    st.query_params["job"] = str(job_id)
    return by_id[job_id]


def fmt_int(value: float | None) -> str:
    """``1,234,567`` style, ``-`` for missing values.

    Example:
        >>> fmt_int(1234567), fmt_int(None)
        ('1,234,567', '-')
    """
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{int(value):,}"


def fmt_time(value: datetime | None) -> str:
    """UTC timestamps to the second, ``-`` for missing ones."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
