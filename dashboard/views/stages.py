"""Stages: the verdicts of the job's one-choice ablation (the forest plot of every effect, each
in words, and the per-stage recommendations), then the per-stage decision analysis of every
candidate as charts, one panel per stage, with the matched-pair effects in words.

The forest plot is the report's (:func:`dashboard.figures.forest_figure`). Each panel is one
figure: columns are the choices (downsample, kernel, skip), rows are the mean validation accuracy
with its 95 % bootstrap interval, the share of the Pareto front that has the value, and the mean
FLOPs of the candidates that have it.
"""

from __future__ import annotations

import streamlit as st

from dashboard import _data
from dashboard._ui import pick_job
from dashboard.figures import forest_figure, stage_figure
from dashboard.tables import half_width_note, skipped_lines, verdict_references
from search.analysis import cost_objective
from search.store import JobInfo
from search.vocabulary import FINAL_STATUSES

url = _data.database_url()
st.title("Stage by stage")

job = pick_job(_data.jobs(url))
if job is None:
    st.stop()
objectives = tuple(job.config.objectives)
n_stages = len(job.config.space.stages)
version = _data.version(job)


def _verdicts(job: JobInfo) -> None:
    """The ablation's verdicts, or why there are none (yet)."""
    st.subheader("Verdicts")
    references, none = verdict_references(job)
    if none:
        st.info(none)
    else:
        _effects(job, references)
    skipped = skipped_lines(((job.plan or {}).get("ablate") or {}).get("skipped", []))
    if skipped:
        st.markdown("**Variants not trained:**\n" + "\n".join(f"- {line}" for line in skipped))


def _effects(job: JobInfo, references: tuple[int, ...]) -> None:
    effects, advice = _data.verdicts(
        url, job.id, version, n_stages, references, cost_objective(objectives)
    )
    if effects.empty:
        st.info("The ablation has measured no effect yet.")
        return
    st.caption(
        f"Around trial {', '.join(map(str, references))}: each variant's val_acc minus the "
        "reference's, seed by seed, in points, with a 95 % t-interval over the paired "
        "differences; fewer than 3 seeds give no interval. " + (half_width_note(effects) or "")
    )
    st.plotly_chart(forest_figure(effects), width="stretch", key="forest_chart")
    st.markdown("\n".join(f"- {text}" for text in effects["text"]))
    if not advice.empty:
        st.markdown(
            f"**Recommendations** (around trial {references[0]}):\n"
            + "\n".join(f"- {text}" for text in advice["text"])
        )


_verdicts(job)
table, effects = _data.analysis(url, job.id, version, n_stages, objectives)
if table.empty:
    st.info(
        f"Job {job.id} ended ({job.status}) with no complete candidates to analyse."
        if job.status in FINAL_STATUSES
        else f"Job {job.id} has no complete candidates to analyse yet."
    )
    st.stop()
st.subheader("Every candidate, stage by stage")
st.caption(
    f"Every complete candidate of job {job.id}, whatever its phase; front over "
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
