"""The dashboard's plotly figures, built from data without Streamlit: the Pareto scatter and
front, the hypervolume curve, the per-stage panels, the forest plot of one-choice effects and
the learning curves.

Each function takes the rows a page read and returns a :class:`plotly.graph_objects.Figure`;
the page only places it. Tests assert on the returned traces directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from search.objectives import direction
from search.vocabulary import DOWNSAMPLES, SKIPS, STAGE_CHOICES, VERDICTS, Verdict

__all__ = [
    "FRONT_LINE",
    "FRONT_OUTLINE",
    "MODEBAR_ROOM_PX",
    "PALETTE",
    "STAGE_ROWS",
    "VERDICT_COLOURS",
    "WEBGL_FROM",
    "arch_text",
    "colour_map",
    "curves_figure",
    "effect_label",
    "forest_figure",
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
# What a verdict looks like in the forest plot: the two that state a sign in strong colours,
# the two that do not in muted ones.
VERDICT_COLOURS: dict[Verdict, str] = {
    "better": "#2ca02c",
    "worse": "#d62728",
    "no detectable difference": "#7f7f7f",
    "too few seeds": "#ff7f0e",
}
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
    if "n" in frame.columns:  # per-architecture means: how many seeds each is the mean of
        cols.append(frame["n"])
    return pd.concat(cols, axis=1).to_numpy().tolist()


def _hover(frame: pd.DataFrame) -> str:
    if "n" not in frame.columns:
        return _HOVER
    return _HOVER.replace("<extra>", "<br>means of %{customdata[6]} seeds<extra>")


def _spread(frame: pd.DataFrame, x: str, y: str) -> dict[str, Any]:
    """Error bars of one standard deviation over seeds on each axis whose metric has a
    ``{metric}_std`` column (:func:`search.pareto.architecture_means`); none where it has not.

    One seed has no spread (``NaN``): its bar is of zero length, so the point stands alone.
    """
    bars = {}
    for axis, metric in (("error_x", x), ("error_y", y)):
        if f"{metric}_std" in frame.columns:
            bars[axis] = {
                "type": "data",
                "array": frame[f"{metric}_std"].fillna(0.0).tolist(),
                "thickness": 1,
                "width": 3,
            }
    return bars


def pareto_figure(
    off_front: pd.DataFrame, front: pd.DataFrame, *, x: str, y: str, color_by: str | None
) -> go.Figure:
    """The candidates on objectives ``x`` and ``y``, the front as a staircase over them.

    Points off the front and the front's members are coloured by the stage column
    ``color_by`` (one legend entry per value; ``None``: one colour). The front is a dark line
    under its members, which are larger diamonds with a dark outline in their group's colour,
    so the colouring holds on the front too. Every point's hover names its trial, its
    architecture and its metrics.

    Rows may be per-architecture means (:func:`search.pareto.architecture_means`): a metric
    with a ``{metric}_std`` column gets error bars of one standard deviation over seeds, and
    the hover says how many seeds (``n``) a point is the mean of. Front rows whose
    ``on_front`` is false (members of the replicate-0 front whose mean fell off it) are drawn
    apart as open diamonds, off the staircase.

    Args:
        off_front: Candidate rows (trial, stage columns, metrics) not on the front.
        front: The front's candidate rows, optionally with an ``on_front`` column.

    Example:
        >>> row = {"trial": 0, "s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none",
        ...        "s1.width": 8, "s1.depth": 1, "val_acc": 0.5, "test_acc": 0.5,
        ...        "flops": 10, "params": 5}
        >>> fig = pareto_figure(pd.DataFrame([row]).iloc[:0], pd.DataFrame([row]),
        ...                     x="flops", y="val_acc", color_by="s1.downsample")
        >>> [(t.name, t.showlegend) for t in fig.data]
        [('Pareto front', None), ('s1.downsample=max on the front', True)]
    """
    fallen = front.iloc[:0]
    if "on_front" in front.columns:
        fallen = front[~front["on_front"].astype(bool)]
        front = front[front["on_front"].astype(bool)]
    both = pd.concat([off_front, front, fallen])
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
                hovertemplate=_hover(group),
                **_spread(group, x, y),
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
                hovertemplate=_hover(group),
                **_spread(group, x, y),
            )
        )
    if not fallen.empty:
        fig.add_trace(
            go.Scatter(
                x=fallen[x],
                y=fallen[y],
                mode="markers",
                name="off the front since the search",
                marker={
                    "size": 12,
                    "symbol": "diamond-open",
                    "color": FRONT_OUTLINE,
                    "line": {"width": 1.5},
                },
                customdata=_custom(fallen),
                hovertemplate=_hover(fallen),
                **_spread(fallen, x, y),
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


def effect_label(row: Mapping[str, Any], *, with_reference: bool = False) -> str:
    """The forest plot's name of one effect (a row of
    :func:`search.analysis.ablation_effects`): stage, the alternative and what it replaces,
    and the reference trial where effects around several references share the plot.

    Example:
        >>> effect_label({"stage": 1, "choice": "downsample", "from": "max", "to": "strided"})
        's1 strided vs max'
        >>> effect_label({"stage": 2, "choice": "kernel", "from": 3, "to": 5, "reference": 4},
        ...              with_reference=True)
        's2 kernel 5 vs 3 · ref 4'
    """
    # "strided vs max" needs no name; "5 vs 3" does: "kernel 5 vs 3"
    kind = "" if row["choice"] == "downsample" else f"{row['choice']} "
    label = f"s{row['stage']} {kind}{row['to']} vs {row['from']}"
    return f"{label} · ref {row['reference']}" if with_reference else label


def _effect_order(effects: pd.DataFrame) -> pd.DataFrame:
    """Stage by stage, choices in the space's order, alternatives in their vocabulary's order
    (numbers ascending); an effect measured around several references keeps their order, so
    its rows sit together and their signs can be compared at a glance."""

    def rank(row: Mapping[str, Any]) -> tuple[int, int, int, float]:
        order = _ORDERS.get(str(row["choice"]))
        to = row["to"]
        place = order.index(to) if order and to in order else 0
        number = float(to) if order is None else 0.0
        return int(row["stage"]), STAGE_CHOICES.index(row["choice"]), place, number

    keys = [rank(row) for row in effects.to_dict("records")]
    return effects.iloc[sorted(range(len(effects)), key=keys.__getitem__)]


def forest_figure(effects: pd.DataFrame) -> go.Figure:
    """Every one-choice effect (:func:`search.analysis.ablation_effects`' rows) as a row: the
    seed-paired difference in ``val_acc`` (percentage points) against the reference, its
    95 % t-interval as an error bar, coloured by verdict (:data:`VERDICT_COLOURS`, one trace
    and legend entry per verdict), and a zero line. An effect with too few seeds for an
    interval is an open marker with no bar: an interval from fewer than three seeds is never
    drawn. The hover is the effect's sentence (``text``).

    Example:
        >>> row = {"stage": 1, "choice": "downsample", "from": "max", "to": "strided",
        ...        "reference": 3, "n": 3, "delta": -0.006, "ci_low": -0.011,
        ...        "ci_high": -0.001, "verdict": "worse", "text": "stage 1: ..."}
        >>> fig = forest_figure(pd.DataFrame([row]))
        >>> [(t.name, list(t.y), [round(float(v), 1) for v in t.x]) for t in fig.data]
        [('worse', ['s1 strided vs max'], [-0.6])]
    """
    ordered = _effect_order(effects)
    several = ordered["reference"].nunique() > 1
    labels = [effect_label(row, with_reference=several) for row in ordered.to_dict("records")]
    ordered = ordered.assign(label=labels, points=ordered["delta"] * 100)
    fig = go.Figure()
    for verdict in VERDICTS:
        part = ordered[ordered["verdict"] == verdict]
        if part.empty:
            continue
        interval = verdict != "too few seeds"
        fig.add_trace(
            go.Scatter(
                x=part["points"],
                y=part["label"],
                mode="markers",
                name=verdict,
                marker={
                    "size": 10,
                    "color": VERDICT_COLOURS[verdict],
                    "symbol": "circle" if interval else "circle-open",
                    "line": {"width": 2},
                },
                error_x=(
                    {
                        "type": "data",
                        "symmetric": False,
                        "array": ((part["ci_high"] - part["delta"]) * 100).tolist(),
                        "arrayminus": ((part["delta"] - part["ci_low"]) * 100).tolist(),
                        "thickness": 2,
                    }
                    if interval
                    else None
                ),
                customdata=part[["text", "n"]].to_numpy(),
                hovertemplate="%{customdata[0]}<br>%{customdata[1]} seeds<extra></extra>",
            )
        )
    fig.add_vline(x=0, line={"color": FRONT_LINE, "width": 1, "dash": "dot"})
    fig.update_yaxes(
        type="category", categoryorder="array", categoryarray=labels, autorange="reversed"
    )
    fig.update_layout(
        # one row of about 26 px per effect, room for the axis title and the legend
        height=max(260, 130 + 26 * len(labels)),
        margin=_MARGIN,
        xaxis_title="val_acc of the variant − the reference, points (95 % t-interval over seeds)",
        xaxis={"zeroline": False},
        legend={"orientation": "h", "y": -0.2, "title": {"text": "verdict"}},
    )
    return fig


def curves_figure(epochs: pd.DataFrame, *, names: Mapping[int, str] | None = None) -> go.Figure:
    """Validation accuracy per epoch, one line per trial (:func:`search.store.epochs_frame`'s
    columns ``trial_number``, ``epoch``, ``val_acc``), in trial order; a line is named
    ``trial N`` unless ``names`` names it.

    Example:
        >>> frame = pd.DataFrame({"trial_number": [2, 1], "epoch": [1, 1], "val_acc": [0.5, 0.4]})
        >>> [t.name for t in curves_figure(frame).data]
        ['trial 1', 'trial 2']
        >>> [t.name for t in curves_figure(frame, names={2: "reference"}).data]
        ['trial 1', 'reference']
    """
    names = names or {}
    fig = go.Figure()
    for trial, curve in epochs.groupby("trial_number", sort=True):
        fig.add_trace(
            go.Scatter(
                x=curve["epoch"],
                y=curve["val_acc"],
                mode="lines+markers",
                name=names.get(int(trial), f"trial {trial}"),
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
