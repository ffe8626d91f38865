"""Trials: the job's candidates as a filterable table, and learning curves of chosen trials.

The filter grammar is the CLI's (``poolstride trials --where``): ``KEY=VALUE``, ``KEY!=VALUE``,
``KEY<N``, ``KEY<=N``, ``KEY>N``, ``KEY>=N``, several separated by commas (AND). ``?where=``,
``?sort=`` and ``?limit=`` preset them. Filtering, sorting and the row limit run in the
database, so a 100k-candidate job costs what the shown rows cost.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import _data
from dashboard._ui import pick_job

DEFAULT_LIMIT = 500
DEFAULT_CURVES = 5

url = _data.database_url()
st.title("Trials")

job = pick_job(_data.jobs(url), need_trials=False)
if job is None:
    st.stop()
version = _data.version(job)

c1, c2, c3 = st.columns([4, 2, 1])
where_text = c1.text_input(
    "Filter",
    value=st.query_params.get("where", ""),
    key="trials_where",
    placeholder="s2.downsample=max, val_acc>0.5",
    help="The grammar of `poolstride trials --where`: KEY=VALUE, KEY!=VALUE, KEY<N, KEY<=N, "
    "KEY>N, KEY>=N; keys sN.downsample, sN.kernel, sN.skip, sN.width, sN.depth, trial, "
    "state, val_acc, test_acc, flops, params, …; several separated by commas.",
)
sort_text = c2.text_input(
    "Sort",
    value=st.query_params.get("sort", ""),
    key="trials_sort",
    placeholder="trial",
    help="A key, or -key for descending, e.g. -val_acc.",
)
wanted_limit = st.query_params.get("limit", "")
limit = int(
    c3.number_input(
        "Rows",
        min_value=1,
        step=100,
        key="trials_limit",
        value=int(wanted_limit)
        if wanted_limit.isdigit() and int(wanted_limit) > 0
        else DEFAULT_LIMIT,
    )
)
where = tuple(part.strip() for part in where_text.split(",") if part.strip())
sort = sort_text.strip() or None
for name, value in (("where", where_text.strip()), ("sort", sort or "")):
    if value:
        st.query_params[name] = value
    elif name in st.query_params:
        del st.query_params[name]

try:
    shown = _data.candidates(url, job.id, version, where, sort, limit)
    # the count reads one narrow column of the matches
    matches = len(_data.candidates(url, job.id, version, where, columns=("trial",)))
except ValueError as exc:  # a malformed filter: say so in the CLI's words, keep the page
    st.error(str(exc))
    st.stop()

st.caption(
    f"{matches:,} of job {job.id}'s candidates match"
    + (f"; the first {limit:,} are shown" if matches > limit else "")
    + ". Select rows to draw their learning curves."
)
table = st.dataframe(
    shown.drop(columns=["candidate_id"]),
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="multi-row",
    key="trials_table",
)
picked = [int(shown.iloc[i]["trial"]) for i in table.selection.rows]
trials = picked or [int(t) for t in shown["trial"].head(DEFAULT_CURVES)]

st.subheader("Learning curves")
curves = _data.epochs(url, job.id, version)
curves = curves[curves["trial_number"].isin(trials)]
if curves.empty:
    st.info("The chosen trials have no recorded epochs yet.")
else:
    fig = go.Figure()
    for trial, curve in curves.groupby("trial_number", sort=True):
        fig.add_trace(
            go.Scatter(
                x=curve["epoch"], y=curve["val_acc"], mode="lines+markers", name=f"trial {trial}"
            )
        )
    fig.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="epoch",
        yaxis_title="val_acc",
        xaxis={"dtick": 1},
    )
    st.plotly_chart(fig, width="stretch", key="curves_chart")
    st.caption(
        ("Trials " if len(trials) > 1 else "Trial ")
        + ", ".join(map(str, trials))
        + ("" if picked else f" (the first {DEFAULT_CURVES} rows; select rows to choose)")
    )
