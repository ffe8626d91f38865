"""What several pages share on screen: the job picker and the settings of count columns."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from search.store import JobInfo

__all__ = ["COUNT_COLUMNS", "pick_job"]

# st.dataframe settings that write the counts of a candidate table with thousands separators
# (in the browser's locale), keeping them numbers so that the table still sorts them.
COUNT_COLUMNS = {
    key: st.column_config.NumberColumn(key, format="localized")
    for key in ("flops", "params", "activation_bytes")
}


def pick_job(jobs: Sequence[JobInfo], *, need_trials: bool = True) -> JobInfo | None:
    """A job selectbox that follows the ``?job=ID`` query parameter and writes it back.

    The query parameter makes a page's address name its job, so a link (or the browser test)
    opens a job directly. Without one, the newest job with complete trials is shown.
    Returns ``None`` (having said why) when there is nothing to show.

    Example:
        >>> job = pick_job(_data.jobs(url))  # in a page script  # doctest: +SKIP
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
