"""Pareto: every architecture of a job on two objectives, the front as a line, hypervolume
beside.

An architecture trained with several seeds is one point at its means, with error bars of one
standard deviation, as ``poolstride pareto`` ranks it; members of the search's front that are
not on the final one are open diamonds. ``?job=ID&x=flops&y=val_acc&color=s2.downsample``
opens a view directly. Beyond :data:`MAX_POINTS` architectures the points off the front are a
random sample (the page says so); the front is always drawn whole.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import _data
from dashboard._ui import COUNT_COLUMNS, pick_job
from dashboard.figures import hypervolume_figure, off_front_sample, pareto_figure
from dashboard.tables import trials_columns
from search.objectives import OBJECTIVES
from search.query import stage_columns
from search.vocabulary import METRICS

# Points drawn with their full rows (architecture in the hover, colour by a stage choice). Kept
# at 5,000 because load_candidates reads that many rows' stages by id, beyond by the whole job.
MAX_POINTS = 5_000

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

means = _data.means(url, job.id, version, pair)
if means.empty:
    st.info(
        f"No complete candidate of job {job.id} has both {y_obj} and {x_obj} "
        "(latency is only measured where the job asks for it)."
    )
    st.stop()
front = _data.front(url, job.id, version, pair)
members = front.members
shown, sampled = off_front_sample(means, [int(t) for t in front.rows["trial"]], MAX_POINTS)
# Full rows (stage choices, for colour and hover) only for what is drawn: one read.
off = _data.means_rows(url, job.id, version, pair, tuple(sorted(shown)))
fig = pareto_figure(
    off, front.rows, x=x_obj, y=y_obj, color_by=None if color_by == "none" else color_by
)
seeded = bool((means["n"] > 1).any())
fallen = len(front.rows) - len(members)

left, right = st.columns([3, 2])
with left:
    st.plotly_chart(fig, width="stretch", key="pareto_chart")
    st.caption(
        f"{len(means):,} architectures of {front.complete:,} complete candidates, "
        f"{len(members)} on the front (diamonds)"
        + (f"; {fallen} of the search's front fell off it (open diamonds)" if fallen else "")
        + (
            f"; drawn: the front and a random sample of {len(shown):,} of the other "
            f"{len(means) - len(front.rows):,}"
            if sampled
            else ""
        )
        + (". Points are means over seeds, bars one standard deviation." if seeded else "")
    )
with right:
    history = _data.hypervolume_curve(url, job.id, version, pair)
    st.markdown(f"**Hypervolume of ({y_obj}, {x_obj}) over trials**")
    st.plotly_chart(hypervolume_figure(history), width="stretch", key="hypervolume_chart")
    st.metric(
        "hypervolume",
        f"{front.hypervolume:.4f}",
        help="Measure of what the front of architectures (their means over seeds) dominates, "
        "up to accuracy 0 and 1.1 × the largest cost, in normalised units (search.pareto's "
        "reference rule).",
    )
    st.metric("front size", len(members))

st.subheader("Front")
# as the Trials table: metrics first, no column the job's space fixes; with seeds, their count
# and spread, and which architectures fell off the front
columns = trials_columns(["trial", *stage_cols, *METRICS], job.config.space)
if seeded:
    columns += ["n", "val_acc_std", "on_front"]
st.dataframe(front.rows[columns], hide_index=True, width="stretch", column_config=COUNT_COLUMNS)
