"""Pareto: every candidate of a job on two objectives, the front as a line, hypervolume beside.

``?job=ID&x=flops&y=val_acc&color=s2.downsample`` opens a view directly. Beyond
:data:`MAX_POINTS` candidates the points off the front are a random sample (the page says so);
the front is always drawn whole.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import _data
from dashboard._ui import pick_job
from search.objectives import OBJECTIVES, direction
from search.query import stage_columns
from search.vocabulary import METRICS

# Points drawn with their full rows (architecture in the hover, colour by a stage choice). Kept
# at 5,000 because load_candidates reads that many rows' stages by id, beyond by the whole job.
MAX_POINTS = 5_000
# From this many points WebGL draws them; below, SVG keeps every point an element of the page
# (crisp in screenshots, countable in the DOM).
WEBGL_FROM = 2_000

url = _data.database_url()
st.title("Pareto front")

job = pick_job(_data.jobs(url))
if job is None:
    st.stop()
version = _data.version(job)
stage_cols = stage_columns(len(job.config.space.stages))


def _choose(
    label: str, options: list[str], param: str, default: str, column: DeltaGenerator
) -> str:
    """A selectbox that starts from the ``param`` query parameter and writes it back."""
    wanted = st.query_params.get(param, "")
    value = wanted if wanted in options else default if default in options else options[0]
    chosen: str = column.selectbox(
        label, options, index=options.index(value), key=f"pareto_{param}"
    )
    st.query_params[param] = chosen
    return chosen


objectives = list(OBJECTIVES)
first, second = [
    *job.config.objectives,
    *(o for o in objectives if o not in job.config.objectives),
][:2]
c1, c2, c3 = st.columns(3)
y_obj = _choose("Objective (y)", objectives, "y", first, c1)
x_obj = _choose("Objective (x)", [o for o in objectives if o != y_obj], "x", second, c2)
color_by = _choose(
    "Colour by",
    ["none", *stage_cols],
    "color",
    "s2.downsample" if "s2.downsample" in stage_cols else "none",
    c3,
)
pair = (y_obj, x_obj)

points = _data.points(url, job.id, version, pair)
measured = points[points[[x_obj, y_obj]].notna().all(axis=1)]
if measured.empty:
    st.info(
        f"No complete candidate of job {job.id} has both {y_obj} and {x_obj} "
        "(latency is only measured where the job asks for it)."
    )
    st.stop()
front_trials = _data.front_trials(url, job.id, version, pair)
others = measured[~measured["trial"].isin(front_trials)]
room = max(MAX_POINTS - len(front_trials), 0)
sampled = len(others) > room
shown = others.sample(room, random_state=0)["trial"] if sampled else others["trial"]
# Full rows (stage choices, for colour and hover) only for what is drawn: one read.
rows = _data.candidates(
    url, job.id, version, trials=tuple(sorted([*front_trials, *shown.tolist()]))
)
front = rows.set_index("trial", drop=False).loc[list(front_trials)]  # front order
drawn = rows[~rows["trial"].isin(front_trials)]


def _arch_text(frame: pd.DataFrame) -> pd.Series:
    """``s1 max k3 none w8 d1 · s2 …`` per row, built column-wise."""
    text = pd.Series("", index=frame.index)
    for i in range(1, len(stage_cols) // 5 + 1):
        part = (
            f"s{i} "
            + frame[f"s{i}.downsample"].astype(str)
            + " k"
            + frame[f"s{i}.kernel"].astype(str)
            + " "
            + frame[f"s{i}.skip"].astype(str)
            + " w"
            + frame[f"s{i}.width"].astype(str)
            + " d"
            + frame[f"s{i}.depth"].astype(str)
        )
        text = part if i == 1 else text + " · " + part
    return text


_HOVER = (
    "trial %{customdata[0]}<br>%{customdata[1]}<br>val_acc %{customdata[2]:.4f} · "
    "test_acc %{customdata[3]:.4f}<br>FLOPs %{customdata[4]:,} · params %{customdata[5]:,}"
    "<extra></extra>"
)


def _custom(frame: pd.DataFrame) -> list[list[object]]:
    cols = [
        frame["trial"],
        _arch_text(frame),
        frame["val_acc"],
        frame["test_acc"],
        frame["flops"],
        frame["params"],
    ]
    return pd.concat(cols, axis=1).to_numpy().tolist()


fig = go.Figure()
groups = (
    [("candidates", drawn)]
    if color_by == "none"
    else [(f"{color_by}={value}", group) for value, group in drawn.groupby(color_by, sort=True)]
)
scatter = go.Scattergl if len(drawn) >= WEBGL_FROM else go.Scatter
for name, group in groups:
    fig.add_trace(
        scatter(
            x=group[x_obj],
            y=group[y_obj],
            mode="markers",
            name=name,
            marker={"size": 6, "opacity": 0.6},
            customdata=_custom(group),
            hovertemplate=_HOVER,
        )
    )
line = front.sort_values([x_obj, y_obj])
fig.add_trace(
    go.Scatter(
        x=line[x_obj],
        y=line[y_obj],
        mode="lines+markers",
        name="Pareto front",
        # a staircase: the edge of the region the front dominates
        line={"shape": "hv", "width": 2},
        marker={"size": 10, "symbol": "diamond", "line": {"width": 1}},
        customdata=_custom(line),
        hovertemplate=_HOVER,
    )
)
fig.update_layout(
    height=560,
    margin={"l": 10, "r": 10, "t": 30, "b": 10},
    xaxis_title=f"{x_obj} ({direction(x_obj)})",
    yaxis_title=f"{y_obj} ({direction(y_obj)})",
    legend={"orientation": "h", "y": -0.15},
)

left, right = st.columns([3, 2])
with left:
    st.plotly_chart(fig, width="stretch", key="pareto_chart")
    st.caption(
        f"{len(measured):,} complete candidates, {len(front)} on the front"
        + (
            f"; drawn: the front and a random sample of {room:,} of the other {len(others):,}"
            if sampled
            else ""
        )
    )
with right:
    history = _data.hypervolume_curve(url, job.id, version, pair)
    st.markdown(f"**Hypervolume of ({y_obj}, {x_obj}) over trials**")
    hv = go.Figure(
        go.Scatter(
            x=history["trial"],
            y=history["hypervolume"],
            mode="lines",
            name="hypervolume",
            line={"shape": "hv"},
        )
    )
    hv.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="trial",
        yaxis_title="hypervolume",
    )
    st.plotly_chart(hv, width="stretch", key="hypervolume_chart")
    st.metric(
        "hypervolume",
        f"{_data.hypervolume_of(url, job.id, version, pair):.4f}",
        help="Measure of what the front dominates, up to accuracy 0 and 1.1 × the "
        "largest cost, in normalised units (search.pareto's reference rule).",
    )
    st.metric("front size", len(front))

st.subheader("Front")
st.dataframe(front[["trial", *stage_cols, *METRICS]], hide_index=True, width="stretch")
