"""Architecture: one candidate drawn stage by stage, and two candidates side by side.

``?job=ID&trial=N`` opens a candidate directly; ``a=N&b=M`` preselects the comparison.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import _data
from dashboard._ui import pick_job
from dashboard.network import Part, class_count, diagram, diff_table, parts, parts_table
from dashboard.tables import fmt_value
from search.space import ArchSpec

# Shown as metrics above the part table, in this order.
_HEADLINE = ("val_acc", "test_acc", "params", "flops", "receptive_field")

url = _data.database_url()
st.title("Architecture")

job = pick_job(_data.jobs(url))
if job is None:
    st.stop()
job_id, version = job.id, _data.version(job)
input_shape = job.config.space.input_shape
num_classes = class_count(job)
if num_classes is None:
    st.info(
        f"The class count of job {job_id}'s dataset ({job.config.dataset}) is unknown: no "
        "worker has recorded it for this job and the dataset's name does not fix it. The "
        "head's parameters and FLOPs are left blank."
    )
# Only the rows shown are read: the best candidate (the natural first look) and the chosen ones.
best_rows = _data.candidates(url, job_id, version, ("state=complete",), "-val_acc", 1)
best = int(best_rows["trial"].iloc[0]) if len(best_rows) else 0


def _row(trial: int) -> dict[str, Any] | None:
    rows = _data.candidates(url, job_id, version, trials=(trial,))
    return rows.iloc[0].to_dict() if len(rows) else None


def _trial_input(label: str, param: str, default: int, key: str) -> dict[str, Any] | None:
    """A trial-number input (preset by the ``param`` query parameter); the chosen row."""
    wanted = st.query_params.get(param, "")
    value = int(wanted) if wanted.isdigit() else default
    trial = int(st.number_input(label, min_value=0, value=value, step=1, key=key))
    row = _row(trial)
    if row is None:
        st.warning(f"Job {job_id} has no trial {trial}.")
        return None
    st.query_params[param] = str(trial)
    return row


def _network(row: dict[str, Any]) -> list[Part]:
    return parts(ArchSpec.from_row(row), input_shape, num_classes)


def _show(row: dict[str, Any]) -> None:
    network = _network(row)
    st.graphviz_chart(diagram(network, input_shape), width="stretch")
    for col, key in zip(st.columns(len(_HEADLINE)), _HEADLINE, strict=True):
        col.metric(key, fmt_value(row[key]))
    st.dataframe(parts_table(network), hide_index=True, width="stretch")
    st.code(ArchSpec.from_row(row).canonical_json(), language="json", wrap_lines=True)


one, two = st.tabs(["One candidate", "Compare two"])
with one:
    chosen = _trial_input("Trial", "trial", best, "arch_trial")
    if chosen is not None:
        _show(chosen)
with two:
    left, right = st.columns(2)
    with left:
        a = _trial_input("Trial A", "a", best, "arch_a")
    with right:
        b = _trial_input("Trial B", "b", 0, "arch_b")
    if a is not None and b is not None:
        diff = diff_table(a, b)
        st.markdown(
            f"**{int(diff['differs'].sum())}** of {len(diff)} values differ between "
            f"trial {a['trial']} and trial {b['trial']}."
        )
        st.dataframe(
            diff.style.apply(
                lambda r: (
                    ["background-color: rgba(255, 193, 7, 0.25)" if r["differs"] else ""] * len(r)
                ),
                axis=1,
            ),
            hide_index=True,
            width="stretch",
        )
        for column, row in ((left, a), (right, b)):
            with column:
                network = _network(row)
                st.graphviz_chart(diagram(network, input_shape), width="stretch")
                st.dataframe(parts_table(network), hide_index=True, width="stretch")
