"""Architecture: one candidate drawn stage by stage, and two candidates side by side.

``?job=ID&trial=N`` opens a candidate directly; ``a=N&b=M`` preselects the comparison.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import _data
from dashboard._ui import fmt_int, pick_job
from search.vocabulary import METRICS

url = _data.database_url()
st.title("Architecture")

job = pick_job(_data.jobs(url))
if job is None:
    st.stop()
job_id, version = job.id, _data.version(job)
input_shape = job.config.space.input_shape
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


def _parts(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The network part by part: stem, each stage with its ops and choices, the head."""
    arch = _data.arch_of(row)
    out = []
    for layer in _data.stage_layers(arch, input_shape, int(row["params"])):
        # parts are "stem", "s1" … "sN" and "head"
        stage = arch.stages[int(layer.name[1:]) - 1] if layer.name[1:].isdigit() else None
        out.append(
            {
                "part": layer.name,
                "ops": (
                    " → ".join(_data.stage_ops(stage))
                    if stage
                    else "conv 3×3"
                    if layer.name == "stem"
                    else "global avg-pool → linear"
                ),
                "downsample": stage.downsample if stage else "",
                "kernel": str(stage.kernel) if stage else "",
                "skip": stage.skip if stage else "",
                "width": layer.out_channels,
                "output": f"{layer.out_channels}×{layer.out_size[0]}×{layer.out_size[1]}",
                "params": layer.params,
                "FLOPs": layer.flops,
                "receptive field": layer.receptive_field,
            }
        )
    return out


def _diagram(row: dict[str, Any]) -> str:
    """Graphviz DOT: input → stem → stages → head, each box with its ops, output and costs."""
    chan, h, w = input_shape
    nodes = [f'input [label="input\\n{chan}×{h}×{w}", shape=plaintext];']
    for part in _parts(row):
        ops = part["ops"].replace(" → ", "\\n")
        nodes.append(
            f'{part["part"]} [label="{part["part"]}\\n{ops}\\nout {part["output"]}'
            f'\\n{fmt_int(part["params"])} params · {fmt_int(part["FLOPs"])} FLOPs"];'
        )
    chain = " -> ".join(["input", *(p["part"] for p in _parts(row))])
    return (
        "digraph { rankdir=LR; node [shape=box, style=rounded, fontsize=10];\n"
        + "\n".join(nodes)
        + f"\n{chain}; }}"
    )


def _show(row: dict[str, Any]) -> None:
    st.graphviz_chart(_diagram(row), width="stretch")
    cols = st.columns(5)
    for col, key in zip(
        cols, ("val_acc", "test_acc", "params", "flops", "receptive_field"), strict=True
    ):
        value = row[key]
        col.metric(
            key,
            "-" if pd.isna(value) else f"{value:.4f}" if key.endswith("acc") else fmt_int(value),
        )
    st.dataframe(pd.DataFrame.from_records(_parts(row)), hide_index=True, width="stretch")
    st.code(_data.arch_of(row).canonical_json(), language="json")


def _diff(a: dict[str, Any], b: dict[str, Any]) -> pd.DataFrame:
    """One row per stage choice and metric: both candidates' values and whether they differ."""
    pa, pb = _data.arch_of(a).params(), _data.arch_of(b).params()
    rows = [{"key": k, "A": pa.get(k), "B": pb.get(k)} for k in dict.fromkeys([*pa, *pb])]
    rows += [{"key": k, "A": a[k], "B": b[k]} for k in ("state", *METRICS)]
    diff = pd.DataFrame.from_records(rows)
    diff["differs"] = [str(x) != str(y) for x, y in zip(diff["A"], diff["B"], strict=True)]
    return diff.astype({"A": str, "B": str})


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
        diff = _diff(a, b)
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
                st.graphviz_chart(_diagram(row), width="stretch")
                st.dataframe(
                    pd.DataFrame.from_records(_parts(row)), hide_index=True, width="stretch"
                )
