"""The dashboard's plotly figures, built from data without Streamlit: the Pareto scatter and
front, the hypervolume curve, the per-stage panels and the learning curves.

Each function takes the rows a page read and returns a :class:`plotly.graph_objects.Figure`;
the page only places it. Tests assert on the returned traces directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from search.objectives import direction
from search.vocabulary import DOWNSAMPLES, SKIPS, STAGE_CHOICES

__all__ = [
    "FRONT_LINE",
    "FRONT_OUTLINE",
    "MODEBAR_ROOM_PX",
    "PALETTE",
    "STAGE_ROWS",
    "WEBGL_FROM",
    "arch_text",
    "colour_map",
    "curves_figure",
    "hypervolume_figure",
    "off_front_sample",
    "pareto_figure",
    "stage_figure",
]

# One colour per value of the "colour by" choice, in the choice's own order.
PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)
# The front's staircase and its members' outline: dark, so the fill keeps the group's colour.
FRONT_LINE = "#333333"
FRONT_OUTLINE = "#111111"
# From this many points WebGL draws them; below, SVG keeps every point an element of the page
# (crisp in screenshots, countable in the DOM).
WEBGL_FROM = 2_000
# Height of plotly's toolbar (modebar), which floats over the top of a figure: a figure with
# titles above its plots leaves this much room over them.
MODEBAR_ROOM_PX = 32
# The rows of a stage panel: the analysis column drawn, its label, its colour.
STAGE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("val_acc", "val_acc (95 % CI)", "#1f77b4"),
    ("front_share", "front share", "#2ca02c"),
    ("flops_mean", "mean FLOPs", "#7f7f7f"),
)
# The words of a choice in the search space's order; numbers (kernel, width, depth) sort.
_ORDERS: dict[str, tuple[str, ...]] = {"downsample": DOWNSAMPLES, "skip": SKIPS}
_HOVER = (
    "trial %{customdata[0]}<br>%{customdata[1]}<br>val_acc %{customdata[2]:.4f} · "
    "test_acc %{customdata[3]:.4f}<br>FLOPs %{customdata[4]:,} · params %{customdata[5]:,}"
    "<extra></extra>"
)
_MARGIN = {"l": 10, "r": 10, "t": 30, "b": 10}


def arch_text(frame: pd.DataFrame) -> pd.Series:
    """``s1 max k3 none w8 d1 · s2 …`` per row of candidate rows, built column-wise.

    Example:
        >>> row = {"s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none", "s1.width": 8,
        ...        "s1.depth": 1}
        >>> arch_text(pd.DataFrame([row])).tolist()
        ['s1 max k3 none w8 d1']
    """
    n_stages = sum(1 for c in frame.columns if c.endswith(".downsample"))
    parts = [
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
        for i in range(1, n_stages + 1)
    ]
    text = parts[0]
    for part in parts[1:]:
        text = text + " · " + part
    return text


def colour_map(column: str, values: Sequence[Any]) -> dict[Any, str]:
    """A colour per value of the stage column ``column`` (``s2.downsample``), in the space's
    order (``max, avg, strided, conv``; numbers ascending), so a value keeps its colour
    whatever else a job has.

    Example:
        >>> colour_map("s1.skip", ["pool", "none"]) == {"none": PALETTE[0], "pool": PALETTE[2]}
        True
    """
    present = set(values)
    order = _ORDERS.get(column.split(".")[-1])
    if order is None:
        return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted(present))}
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(order) if v in present}


def off_front_sample(
    measured: pd.DataFrame, front_trials: Sequence[int], max_points: int
) -> tuple[list[int], bool]:
    """Which candidates off the front to draw: all of them, or a random sample (seeded, so a
    rerun draws the same) when the front and they would exceed ``max_points``.

    Returns:
        Their trial numbers, and whether they are a sample.

    Example:
        >>> off_front_sample(pd.DataFrame({"trial": [0, 1, 2, 3]}), [2], 3)[1]
        True
    """
    others = measured.loc[~measured["trial"].isin(front_trials), "trial"]
    room = max(max_points - len(front_trials), 0)
    if len(others) <= room:
        return [int(t) for t in others], False
    return [int(t) for t in others.sample(room, random_state=0)], True


def _custom(frame: pd.DataFrame) -> list[list[Any]]:
    cols = [
        frame["trial"],
        arch_text(frame),
        frame["val_acc"],
        frame["test_acc"],
        frame["flops"],
        frame["params"],
    ]
    return pd.concat(cols, axis=1).to_numpy().tolist()


def pareto_figure(
    off_front: pd.DataFrame, front: pd.DataFrame, *, x: str, y: str, color_by: str | None
) -> go.Figure:
    """The candidates on objectives ``x`` and ``y``, the front as a staircase over them.

    Points off the front and the front's members are coloured by the stage column
    ``color_by`` (one legend entry per value; ``None``: one colour). The front is a dark line
    under its members, which are larger diamonds with a dark outline in their group's colour,
    so the colouring holds on the front too. Every point's hover names its trial, its
    architecture and its metrics.

    Args:
        off_front: Candidate rows (trial, stage columns, metrics) not on the front.
        front: The front's candidate rows.

    Example:
        >>> row = {"trial": 0, "s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none",
        ...        "s1.width": 8, "s1.depth": 1, "val_acc": 0.5, "test_acc": 0.5,
        ...        "flops": 10, "params": 5}
        >>> fig = pareto_figure(pd.DataFrame([row]).iloc[:0], pd.DataFrame([row]),
        ...                     x="flops", y="val_acc", color_by="s1.downsample")
        >>> [(t.name, t.showlegend) for t in fig.data]
        [('Pareto front', None), ('s1.downsample=max on the front', True)]
    """
    both = pd.concat([off_front, front])
    if color_by is None:
        colours = {None: PALETTE[0]}
        groups = [("candidates", None)]
    else:
        colours = colour_map(color_by, both[color_by].tolist())
        groups = [(f"{color_by}={value}", value) for value in colours]

    def members(frame: pd.DataFrame, value: Any) -> pd.DataFrame:
        return frame if color_by is None else frame[frame[color_by] == value]

    scatter = go.Scattergl if len(off_front) >= WEBGL_FROM else go.Scatter
    fig = go.Figure()
    shown_off: set[str] = set()
    for name, value in groups:
        group = members(off_front, value)
        if group.empty:  # plotly leaves an empty trace out of the legend: the front lists it
            continue
        shown_off.add(name)
        fig.add_trace(
            scatter(
                x=group[x],
                y=group[y],
                mode="markers",
                name=name,
                legendgroup=name,
                marker={"size": 7, "opacity": 0.6, "color": colours[value]},
                customdata=_custom(group),
                hovertemplate=_HOVER,
            )
        )
    line = front.sort_values([x, y])
    fig.add_trace(
        go.Scatter(
            x=line[x],
            y=line[y],
            mode="lines",
            name="Pareto front",
            # a staircase: the edge of the region the front dominates
            line={"shape": "hv", "width": 2, "color": FRONT_LINE},
            hoverinfo="skip",
        )
    )
    for name, value in groups:
        group = members(line, value)
        if group.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=group[x],
                y=group[y],
                mode="markers",
                name=f"{name} on the front",
                legendgroup=name,
                # the group's one legend entry, unless its off-front points already give it
                showlegend=name not in shown_off,
                marker={
                    "size": 12,
                    "symbol": "diamond",
                    "color": colours[value],
                    "line": {"width": 1.5, "color": FRONT_OUTLINE},
                },
                customdata=_custom(group),
                hovertemplate=_HOVER,
            )
        )
    fig.update_layout(
        height=560,
        margin=_MARGIN,
        xaxis_title=f"{x} ({direction(x)})",
        yaxis_title=f"{y} ({direction(y)})",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def hypervolume_figure(history: pd.DataFrame) -> go.Figure:
    """The front's hypervolume after each complete trial, as a step line
    (:func:`search.pareto.hypervolume_history`'s frame).

    Example:
        >>> fig = hypervolume_figure(pd.DataFrame({"trial": [0, 1], "hypervolume": [0.1, 0.3]}))
        >>> fig.data[0].y.tolist()
        [0.1, 0.3]
    """
    fig = go.Figure(
        go.Scatter(
            x=history["trial"],
            y=history["hypervolume"],
            mode="lines",
            name="hypervolume",
            line={"shape": "hv"},
        )
    )
    fig.update_layout(height=300, margin=_MARGIN, xaxis_title="trial", yaxis_title="hypervolume")
    return fig


def stage_figure(stage: int, rows: pd.DataFrame) -> go.Figure:
    """One stage's panel of :func:`search.analysis.stage_analysis` rows: a column per choice
    (downsample, kernel, skip), a row per :data:`STAGE_ROWS` entry (mean val_acc with its
    interval, front share, mean FLOPs), a point or bar per value.

    The figure's title and the choices' titles sit above the plots, below
    :data:`MODEBAR_ROOM_PX` left free for plotly's toolbar, so it covers none of them.

    Example:
        >>> rows = pd.DataFrame({"choice": ["kernel"], "value": [3], "count": [2],
        ...     "val_acc_mean": [0.5], "val_acc_lo": [0.4], "val_acc_hi": [0.6],
        ...     "front_share": [1.0], "flops_mean": [100.0]})
        >>> [t.type for t in stage_figure(1, rows).data]
        ['scatter', 'bar', 'bar']
    """
    choices = [c for c in STAGE_CHOICES if (rows["choice"] == c).any()]
    fig = make_subplots(
        rows=len(STAGE_ROWS),
        cols=len(choices),
        shared_xaxes="columns",
        column_titles=choices,
        row_titles=[label for _, label, _ in STAGE_ROWS],
        vertical_spacing=0.06,
        horizontal_spacing=0.06,
    )
    (_, _, acc_colour), (_, _, share_colour), (_, _, cost_colour) = STAGE_ROWS
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
                marker={"size": 10, "color": acc_colour},
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
        bars = (
            (2, "front_share", "front share", share_colour, "%{x}: %{y:.0%} of the front"),
            (3, "flops_mean", "mean FLOPs", cost_colour, "%{x}: %{y:,.0f} FLOPs"),
        )
        for row, column, name, colour, hover in bars:
            fig.add_trace(
                go.Bar(
                    x=x,
                    y=part[column],
                    name=name,
                    showlegend=False,
                    marker_color=colour,
                    hovertemplate=f"{hover}<extra></extra>",
                ),
                row=row,
                col=col,
            )
    low = rows["val_acc_lo"].min()
    fig.update_yaxes(range=[max(0.0, low - 0.05), min(1.0, rows["val_acc_hi"].max() + 0.02)], row=1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=2)
    fig.update_xaxes(type="category")  # kernel sizes are choices, not a scale
    fig.update_layout(
        height=660,
        # the toolbar's room, then the figure's title, then the choices' titles
        margin={"l": 10, "r": 10, "t": MODEBAR_ROOM_PX + 30, "b": 10},
        title={"text": f"Stage {stage}", "y": 1.0, "yanchor": "top", "pad": {"t": 8}},
    )
    return fig


def curves_figure(epochs: pd.DataFrame) -> go.Figure:
    """Validation accuracy per epoch, one line per trial (:func:`search.store.epochs_frame`'s
    columns ``trial_number``, ``epoch``, ``val_acc``), in trial order.

    Example:
        >>> frame = pd.DataFrame({"trial_number": [2, 1], "epoch": [1, 1], "val_acc": [0.5, 0.4]})
        >>> [t.name for t in curves_figure(frame).data]
        ['trial 1', 'trial 2']
    """
    fig = go.Figure()
    for trial, curve in epochs.groupby("trial_number", sort=True):
        fig.add_trace(
            go.Scatter(
                x=curve["epoch"], y=curve["val_acc"], mode="lines+markers", name=f"trial {trial}"
            )
        )
    fig.update_layout(
        height=420,
        margin=_MARGIN,
        xaxis_title="epoch",
        yaxis_title="val_acc",
        xaxis={"dtick": 1},
    )
    return fig
