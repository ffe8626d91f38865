"""Stages: the per-stage decision analysis as charts, one panel per stage, and the matched-pair
effects in words.

Each panel is one figure: columns are the choices (downsample, kernel, skip), rows are the mean
validation accuracy with its 95 % bootstrap interval, the share of the Pareto front that has the
value, and the mean FLOPs of the candidates that have it.
"""

from __future__ import annotations

import streamlit as st

from dashboard import _data
from dashboard._ui import pick_job
from dashboard.figures import stage_figure
from search.vocabulary import FINAL_STATUSES

url = _data.database_url()
st.title("Stage by stage")

job = pick_job(_data.jobs(url))
if job is None:
    st.stop()
objectives = tuple(job.config.objectives)
table, effects = _data.analysis(
    url, job.id, _data.version(job), len(job.config.space.stages), objectives
)
if table.empty:
    st.info(
        f"Job {job.id} ended ({job.status}) with no complete candidates to analyse."
        if job.status in FINAL_STATUSES
        else f"Job {job.id} has no complete candidates to analyse yet."
    )
    st.stop()
st.caption(
    f"{job.trials_done:,} complete candidates of job {job.id}; front over "
    f"{', '.join(objectives)}. Points: mean val_acc with its 95 % bootstrap interval."
)

for stage, rows in table.groupby("stage", sort=True):
    with st.container(border=True):
        st.plotly_chart(stage_figure(int(stage), rows), width="stretch", key=f"stage_{stage}")
        sentences = effects.loc[effects["stage"] == stage, "sentence"].tolist()
        if sentences:
            st.markdown(
                "**Matched pairs** (architectures that differ in this one choice):\n"
                + "\n".join(f"- {s}" for s in sentences)
            )
        else:
            st.caption(
                "No two candidates differ in a single choice of this stage, so there "
                "is no matched-pair effect to report."
            )
        with st.expander(f"Stage {stage} as a table"):
            # values mix words and kernel sizes: one text column for the table
            st.dataframe(
                rows.drop(columns="stage").astype({"value": str}), hide_index=True, width="stretch"
            )
