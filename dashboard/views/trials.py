"""Trials: the job's candidates as a filterable table, and learning curves of chosen trials.

The filter grammar is the CLI's (``poolstride trials --where``): ``KEY=VALUE``, ``KEY!=VALUE``,
``KEY<N``, ``KEY<=N``, ``KEY>N``, ``KEY>=N``, several separated by commas (AND). ``?where=``,
``?sort=`` and ``?limit=`` preset them. Filtering, sorting and the row limit run in the
database, so a 100k-candidate job costs what the shown rows cost; so are the learning curves,
read for the drawn trials only.
"""

from __future__ import annotations

import streamlit as st

from dashboard import _data
from dashboard._ui import COUNT_COLUMNS, pick_job
from dashboard.figures import curves_figure
from dashboard.tables import trials_columns

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
    matches = _data.count(url, job.id, version, where)
    columns = trials_columns(shown.columns, job.config.space, where, sort)
except ValueError as exc:  # a malformed filter: say so in the CLI's words, keep the page
    st.error(str(exc))
    st.stop()

st.caption(
    f"{matches:,} of job {job.id}'s candidates match"
    + (f"; the first {limit:,} are shown" if matches > limit else "")
    + ". Columns the job's space fixes are left out unless filtered or sorted on."
    + " Select rows to draw their learning curves."
)
table = st.dataframe(
    shown[columns],
    hide_index=True,
    width="stretch",
    column_config=COUNT_COLUMNS,
    on_select="rerun",
    selection_mode="multi-row",
    key="trials_table",
)
picked = [int(shown.iloc[i]["trial"]) for i in table.selection.rows]
trials = picked or [int(t) for t in shown["trial"].head(DEFAULT_CURVES)]

st.subheader("Learning curves")
curves = _data.epochs(url, job.id, version, tuple(sorted(trials)))
if curves.empty:
    st.info("The chosen trials have no recorded epochs yet.")
else:
    st.plotly_chart(curves_figure(curves), width="stretch", key="curves_chart")
    st.caption(
        ("Trials " if len(trials) > 1 else "Trial ")
        + ", ".join(map(str, trials))
        + ("" if picked else f" (the first {DEFAULT_CURVES} rows; select rows to choose)")
    )
