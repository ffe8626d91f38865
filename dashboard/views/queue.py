"""Queue: jobs with their progress and phase, and workers with their last heartbeat, lost ones
warned of.

While a job is queued or running the page reruns its body every :data:`REFRESH_S` seconds.
"""

from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from dashboard import _data
from dashboard.tables import job_errors, jobs_table, lost_warning, phase_now, workers_table

REFRESH_S = 3.0
_ACTIVE = ("queued", "running")

url = _data.database_url()
st.title("Queue")


def _render() -> bool:
    """Draw the queue; returns whether some job is still queued or running."""
    jobs, workers = _data.jobs(url), _data.workers(url)
    active = [j for j in jobs if j.status in _ACTIVE]
    for job in active:
        phase = phase_now(job)
        if job.status == "running" and phase is not None:
            # a phase not yet planned has no total: its bar stands at zero
            st.progress(
                min(phase.done / phase.total, 1.0) if phase.total else 0.0,
                text=f"job {job.id} ({job.name}): {phase.name} phase, {phase.done}/"
                f"{'?' if phase.total is None else phase.total} trials complete, "
                f"worker {job.worker_id}",
            )
    st.subheader("Jobs")
    if jobs:
        st.dataframe(
            jobs_table(jobs),
            hide_index=True,
            width="stretch",
            column_config={
                "progress": st.column_config.ProgressColumn(
                    "progress",
                    help="complete trials of the search budget",
                    min_value=0.0,
                    max_value=1.0,
                    format="percent",
                    width="small",
                ),
            },
        )
        for heading, error in job_errors(jobs):
            st.markdown(f"**{heading}**")
            st.code(error, language=None, wrap_lines=True)
    else:
        st.info("No jobs yet: `poolstride submit` queues a search.")
    st.subheader("Workers")
    if lost := lost_warning(workers):
        st.warning(lost)
    if workers:
        st.dataframe(
            workers_table(workers, datetime.now(timezone.utc)), hide_index=True, width="stretch"
        )
    else:
        st.info("No worker has registered: `poolstride worker` starts one.")
    st.caption(
        "Times are UTC, month-day hour:minute. "
        + (
            f"Refreshes every {REFRESH_S:g} s while jobs are queued or running."
            if active
            else "No job is queued or running."
        )
    )
    return bool(active)


# Decide the refresh from the data of this run: a fragment's run_every is fixed when it is
# defined, so once the last active job ends the fragment asks for a full rerun to stop it.
_active_now = any(j.status in _ACTIVE for j in _data.jobs(url))


@st.fragment(run_every=REFRESH_S if _active_now else None)
def _queue() -> None:
    if not _render() and _active_now:
        st.rerun(scope="app")


_queue()
