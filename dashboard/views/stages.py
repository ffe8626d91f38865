"""Stages: the per-stage decision analysis as charts, one panel per stage, and the matched-pair
effects in words.

Each panel is one figure: columns are the choices (downsample, kernel, skip), rows are the mean
validation accuracy with its 95 % bootstrap interval, the share of the Pareto front that has the
value, and the mean FLOPs of the candidates that have it.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard import _data
from dashboard._ui import pick_job
from search.analysis import CHOICES

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
    st.info(f"Job {job.id} has no complete candidates to analyse yet.")
    st.stop()
st.caption(
    f"{job.trials_done:,} complete candidates of job {job.id}; front over "
    f"{', '.join(objectives)}. Bars: mean val_acc with its 95 % bootstrap interval."
)

_ROWS = (
    ("val_acc", "val_acc (95 % CI)"),
    ("front_share", "front share"),
    ("flops_mean", "mean FLOPs"),
)
_COLOURS = ("#1f77b4", "#2ca02c", "#7f7f7f")  # one per row: accuracy, front share, cost


def _panel(stage: int, rows: pd.DataFrame) -> go.Figure:
    choices = [c for c in CHOICES if (rows["choice"] == c).any()]
    fig = make_subplots(
        rows=len(_ROWS),
        cols=len(choices),
        shared_xaxes="columns",
        column_titles=choices,
        row_titles=[label for _, label in _ROWS],
        vertical_spacing=0.06,
        horizontal_spacing=0.06,
    )
    for col, choice in enumerate(choices, 1):
        part = rows[rows["choice"] == choice]
        x = part["value"].astype(str)
        mean = part["val_acc_mean"]
        # points with interval bars: a bar would suggest the axis starts at zero
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                name="val_acc",
                showlegend=False,
                mode="markers",
                marker={"size": 10, "color": _COLOURS[0]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": part["val_acc_hi"] - mean,
                    "arrayminus": mean - part["val_acc_lo"],
                },
                customdata=part[["count", "val_acc_lo", "val_acc_hi"]].to_numpy(),
                hovertemplate=(
                    "%{x}: val_acc %{y:.4f} [%{customdata[1]:.4f}, %{customdata[2]:.4f}]"
                    ", %{customdata[0]} candidates<extra></extra>"
                ),
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Bar(
                x=x,
                y=part["front_share"],
                showlegend=False,
                marker_color=_COLOURS[1],
                hovertemplate="%{x}: %{y:.0%} of the front<extra></extra>",
            ),
            row=2,
            col=col,
        )
        fig.add_trace(
            go.Bar(
                x=x,
                y=part["flops_mean"],
                showlegend=False,
                marker_color=_COLOURS[2],
                hovertemplate="%{x}: %{y:,.0f} FLOPs<extra></extra>",
            ),
            row=3,
            col=col,
        )
    low = rows["val_acc_lo"].min()
    fig.update_yaxes(range=[max(0.0, low - 0.05), min(1.0, rows["val_acc_hi"].max() + 0.02)], row=1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=2)
    fig.update_xaxes(type="category")  # kernel sizes are choices, not a scale
    fig.update_layout(
        height=620, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title=f"Stage {stage}"
    )
    return fig


for stage, rows in table.groupby("stage", sort=True):
    with st.container(border=True):
        st.plotly_chart(_panel(int(stage), rows), width="stretch", key=f"stage_{stage}")
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
