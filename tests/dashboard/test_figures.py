"""The dashboard's figures on the known rows of ``tests/_known.py``: traces, colours,
the front's staircase and hover data, worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from _known import frame_rows

from dashboard.figures import (
    FRONT_LINE,
    FRONT_OUTLINE,
    MODEBAR_ROOM_PX,
    PALETTE,
    STAGE_ROWS,
    VERDICT_COLOURS,
    WEBGL_FROM,
    arch_text,
    colour_map,
    curves_figure,
    effect_label,
    forest_figure,
    hypervolume_figure,
    off_front_sample,
    pareto_figure,
    stage_figure,
)
from search.analysis import stage_analysis
from search.pareto import hypervolume_history

# the front of the known rows on (val_acc, flops), best val_acc first (tests/search/test_pareto)
FRONT = [5, 3, 1]


@pytest.fixture
def complete() -> pd.DataFrame:
    rows = pd.DataFrame(frame_rows())
    rows = rows[rows["state"] == "complete"].copy()
    rows["test_acc"] = (rows["val_acc"] - 0.01).round(2)
    return rows


def _split(complete: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    front = complete.set_index("trial", drop=False).loc[FRONT]
    return complete[~complete["trial"].isin(FRONT)], front


def test_front_members_keep_the_colour_of_their_group(complete: pd.DataFrame) -> None:
    off, front = _split(complete)
    fig = pareto_figure(off, front, x="flops", y="val_acc", color_by="s1.downsample")
    traces = {t.name: t for t in fig.data}
    # off-front groups in the space's order (trials 0, 2, 4 and 7 are max and off the front;
    # avg and strided have no point off it), the staircase, then the front's members
    assert [t.name for t in fig.data] == [
        "s1.downsample=max",
        "Pareto front",
        "s1.downsample=avg on the front",
        "s1.downsample=strided on the front",
    ]
    colours = {"max": PALETTE[0], "avg": PALETTE[1], "strided": PALETTE[2]}
    assert traces["s1.downsample=max"].marker.color == colours["max"]
    assert list(traces["s1.downsample=max"].x) == [100, 200, 150, 100]
    assert list(traces["s1.downsample=max"].y) == [0.80, 0.85, 0.70, 0.78]
    # every value has exactly one legend entry (plotly lists no empty trace): avg and strided,
    # which only the front has, are listed by their front members
    legend = [t.legendgroup or t.name for t in fig.data if t.showlegend is not False and len(t.x)]
    assert legend == [
        "s1.downsample=max",
        "Pareto front",
        "s1.downsample=avg",
        "s1.downsample=strided",
    ]
    avg, strided = (
        traces["s1.downsample=avg on the front"],
        traces["s1.downsample=strided on the front"],
    )
    assert (list(avg.x), list(avg.y)) == ([400], [0.90])
    assert (list(strided.x), list(strided.y)) == ([60, 120], [0.82, 0.86])
    for trace, value in ((avg, "avg"), (strided, "strided")):
        assert trace.marker.color == colours[value]
        assert trace.marker.symbol == "diamond"
        assert trace.marker.line.color == FRONT_OUTLINE
        # the member toggles with its group
        assert trace.legendgroup == f"s1.downsample={value}"


def test_the_front_is_a_staircase_under_its_members(complete: pd.DataFrame) -> None:
    off, front = _split(complete)
    line = pareto_figure(off, front, x="flops", y="val_acc", color_by=None).data[1]
    assert line.name == "Pareto front" and line.mode == "lines"
    assert (list(line.x), list(line.y)) == ([60, 120, 400], [0.82, 0.86, 0.90])
    assert line.line.shape == "hv" and line.line.color == FRONT_LINE
    assert line.hoverinfo == "skip"  # the members under it carry the hover


def test_hover_names_the_trial_architecture_and_metrics(complete: pd.DataFrame) -> None:
    off, front = _split(complete)
    fig = pareto_figure(off, front, x="flops", y="val_acc", color_by="s1.downsample")
    strided = next(t for t in fig.data if t.name == "s1.downsample=strided on the front")
    assert [list(c) for c in strided.customdata] == [
        [1, "s1 strided k3 none w8 d1 · s2 max k3 none w16 d1", 0.82, 0.81, 60, 10],
        [3, "s1 strided k5 none w8 d1 · s2 max k3 none w16 d1", 0.86, 0.85, 120, 20],
    ]
    assert "trial %{customdata[0]}" in strided.hovertemplate


def test_without_a_colour_every_point_shares_one(complete: pd.DataFrame) -> None:
    off, front = _split(complete)
    fig = pareto_figure(off, front, x="flops", y="val_acc", color_by=None)
    assert [t.name for t in fig.data] == ["candidates", "Pareto front", "candidates on the front"]
    assert fig.data[0].marker.color == fig.data[2].marker.color == PALETTE[0]
    assert sorted(c[0] for c in fig.data[0].customdata) == [0, 2, 4, 7]
    assert [c[0] for c in fig.data[2].customdata] == [1, 3, 5]  # x order, along the staircase
    assert fig.layout.xaxis.title.text == "flops (minimize)"
    assert fig.layout.yaxis.title.text == "val_acc (maximize)"


def test_many_points_are_drawn_by_webgl_the_front_stays_svg(complete: pd.DataFrame) -> None:
    off, front = _split(complete)
    many = pd.concat([off] * (WEBGL_FROM // len(off) + 1), ignore_index=True)
    fig = pareto_figure(many, front, x="flops", y="val_acc", color_by="s1.downsample")
    assert {t.name: t.type for t in fig.data} == {
        "s1.downsample=max": "scattergl",
        "Pareto front": "scatter",
        "s1.downsample=avg on the front": "scatter",
        "s1.downsample=strided on the front": "scatter",
    }


def test_a_value_keeps_its_colour_whatever_else_is_there() -> None:
    assert colour_map("s2.downsample", ["conv", "max"]) == {"max": PALETTE[0], "conv": PALETTE[3]}
    assert colour_map("s1.skip", ["pool"]) == {"pool": PALETTE[2]}
    assert colour_map("s1.kernel", [7, 3, 7]) == {3: PALETTE[0], 7: PALETTE[1]}


def test_points_off_the_front_are_sampled_only_beyond_the_limit() -> None:
    measured = pd.DataFrame({"trial": range(10)})
    assert off_front_sample(measured, [2, 5], 10) == ([0, 1, 3, 4, 6, 7, 8, 9], False)
    shown, sampled = off_front_sample(measured, [2, 5], 5)
    assert sampled and len(shown) == 3 and not {2, 5} & set(shown)
    assert off_front_sample(measured, [2, 5], 5) == (shown, True)  # a rerun draws the same


def test_arch_text() -> None:
    rows = pd.DataFrame(frame_rows()).iloc[[5]]
    assert arch_text(rows).tolist() == ["s1 avg k7 pool w8 d1 · s2 conv k7 proj w16 d1"]


def test_hypervolume_curve_steps_through_the_history(complete: pd.DataFrame) -> None:
    history = hypervolume_history(complete, ["val_acc", "flops"])
    trace = hypervolume_figure(history).data[0]
    assert list(trace.x) == [0, 1, 2, 3, 4, 5, 7]
    assert list(trace.y) == pytest.approx(history["hypervolume"].tolist())
    assert trace.line.shape == "hv"


def test_stage_panel_draws_the_analysis(complete: pd.DataFrame) -> None:
    table = stage_analysis(complete, resamples=50)
    rows = table[table["stage"] == 1]
    fig = stage_figure(1, rows)
    assert fig.layout.title.text == "Stage 1"
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["downsample", "kernel", "skip", *(label for _, label, _ in STAGE_ROWS)]
    # per choice: accuracy points, front-share bars, FLOPs bars
    assert [t.type for t in fig.data] == ["scatter", "bar", "bar"] * 3
    accuracy, share, cost = fig.data[:3]
    downsample = rows[rows["choice"] == "downsample"]
    assert list(accuracy.x) == ["max", "avg", "strided"]
    assert list(accuracy.y) == pytest.approx(downsample["val_acc_mean"].tolist())
    assert list(accuracy.error_y.array) == pytest.approx(
        (downsample["val_acc_hi"] - downsample["val_acc_mean"]).tolist()
    )
    # the front (1, 3, 5): two strided members, one avg
    assert list(share.y) == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert list(cost.y) == pytest.approx([137.5, 400.0, 90.0])
    assert accuracy.marker.color == STAGE_ROWS[0][2]


def test_stage_panel_titles_sit_below_the_toolbar(complete: pd.DataFrame) -> None:
    rows = stage_analysis(complete, resamples=50).query("stage == 1")
    fig = stage_figure(1, rows)
    # the choices' titles stand on the plots' top edge, one text line high (the default 16 px
    # font of subplot titles); the toolbar floats over the top MODEBAR_ROOM_PX of the figure
    line_px = 1.5 * 16
    assert all(a.yanchor == "bottom" and a.y == 1.0 for a in fig.layout.annotations[:3])
    assert fig.layout.margin.t - line_px >= MODEBAR_ROOM_PX
    # the figure's title hangs from the top, left of the toolbar
    assert (fig.layout.title.y, fig.layout.title.yanchor) == (1.0, "top")


def test_learning_curves_one_line_per_trial() -> None:
    epochs = pd.DataFrame(
        {
            "trial_number": [4, 2, 2, 4],
            "epoch": [1, 1, 2, 2],
            "val_acc": [0.5, 0.3, 0.4, 0.6],
        }
    )
    fig = curves_figure(epochs)
    assert [t.name for t in fig.data] == ["trial 2", "trial 4"]
    assert (list(fig.data[0].x), list(fig.data[0].y)) == ([1, 2], [0.3, 0.4])
    assert (list(fig.data[1].x), list(fig.data[1].y)) == ([1, 2], [0.5, 0.6])
    assert fig.layout.xaxis.dtick == 1


def _effect(
    stage: int, choice: str, old: object, new: object, **values: object
) -> dict[str, object]:
    """One row of search.analysis.ablation_effects, with the columns the figures read."""
    return {
        "stage": stage,
        "choice": choice,
        "from": old,
        "to": new,
        "reference": 3,
        "n": 5,
        "text": f"stage {stage}: {new} instead of {old}",
        **values,
    }


@pytest.fixture
def effects() -> pd.DataFrame:
    # given out of order: the plot sorts by stage, then choice, then the vocabulary's order
    return pd.DataFrame(
        [
            _effect(
                2,
                "downsample",
                "max",
                "strided",
                delta=-0.05,
                ci_low=-0.07,
                ci_high=-0.03,
                verdict="worse",
            ),
            _effect(
                1, "skip", "none", "proj", delta=0.012, ci_low=0.002, ci_high=0.03, verdict="better"
            ),
            _effect(
                1,
                "downsample",
                "max",
                "conv",
                delta=0.001,
                ci_low=-0.004,
                ci_high=0.006,
                verdict="no detectable difference",
            ),
            _effect(
                1,
                "kernel",
                3,
                5,
                n=2,
                delta=0.008,
                ci_low=float("nan"),
                ci_high=float("nan"),
                verdict="too few seeds",
            ),
            _effect(
                1,
                "downsample",
                "max",
                "avg",
                delta=-0.002,
                ci_low=-0.01,
                ci_high=0.006,
                verdict="no detectable difference",
            ),
        ]
    )


def test_the_forest_plot_has_a_row_per_effect_coloured_by_verdict(effects: pd.DataFrame) -> None:
    fig = forest_figure(effects)
    rows = [
        "s1 avg vs max",
        "s1 conv vs max",
        "s1 kernel 5 vs 3",
        "s1 skip proj vs none",
        "s2 strided vs max",
    ]
    # stage 1 at the top, choices and their values in the space's order
    assert list(fig.layout.yaxis.categoryarray) == rows
    assert fig.layout.yaxis.autorange == "reversed"
    traces = {t.name: t for t in fig.data}
    assert list(traces) == ["better", "worse", "no detectable difference", "too few seeds"]
    for verdict, trace in traces.items():
        assert trace.marker.color == VERDICT_COLOURS[verdict]
    same = traces["no detectable difference"]
    assert list(same.y) == ["s1 avg vs max", "s1 conv vs max"]
    assert list(same.x) == pytest.approx([-0.2, 0.1])  # points, not fractions
    # the interval as an asymmetric bar around the point, in points
    worse = traces["worse"]
    assert (list(worse.y), list(worse.x)) == (["s2 strided vs max"], [pytest.approx(-5.0)])
    assert list(worse.error_x.array) == pytest.approx([2.0])
    assert list(worse.error_x.arrayminus) == pytest.approx([2.0])
    better = traces["better"]
    assert list(better.error_x.array) == pytest.approx([1.8])
    assert list(better.error_x.arrayminus) == pytest.approx([1.0])
    # two seeds: a point and no interval
    thin = traces["too few seeds"]
    assert list(thin.y) == ["s1 kernel 5 vs 3"] and list(thin.x) == pytest.approx([0.8])
    assert thin.error_x.array is None and thin.marker.symbol == "circle-open"
    # the hover is the effect's sentence
    assert thin.customdata[0][0] == "stage 1: 5 instead of 3"
    (zero,) = fig.layout.shapes
    assert (zero.type, zero.x0, zero.x1) == ("line", 0, 0)


def test_effects_around_several_references_name_them(effects: pd.DataFrame) -> None:
    again = effects.iloc[[0]].assign(reference=7, delta=-0.04)
    fig = forest_figure(pd.concat([effects, again], ignore_index=True))
    labels = list(fig.layout.yaxis.categoryarray)
    # the same effect around either reference sits together, in the references' order
    assert labels[-2:] == ["s2 strided vs max · ref 3", "s2 strided vs max · ref 7"]
    assert list(next(t for t in fig.data if t.name == "worse").x) == pytest.approx([-5.0, -4.0])


def test_effect_labels() -> None:
    row = {"stage": 3, "choice": "skip", "from": "none", "to": "pool", "reference": 2}
    assert effect_label(row) == "s3 skip pool vs none"
    assert effect_label(row, with_reference=True) == "s3 skip pool vs none · ref 2"


def test_means_get_seed_error_bars_and_fallen_members_stand_apart(complete: pd.DataFrame) -> None:
    off, front = _split(complete)
    # per-architecture means: one seed (NaN spread) for trial 1, three for the others
    front = front.assign(
        n=[3, 3, 1],
        val_acc_std=[0.01, 0.02, float("nan")],
        on_front=[True, False, True],
    )
    off = off.assign(n=1, val_acc_std=float("nan"))
    fig = pareto_figure(off, front, x="flops", y="val_acc", color_by=None)
    traces = {t.name: t for t in fig.data}
    assert list(traces) == [
        "candidates",
        "Pareto front",
        "candidates on the front",
        "off the front since the search",
    ]
    members = traces["candidates on the front"]
    # trials 5 and 1 (trial 3 fell off): the staircase and the members leave it out
    assert list(traces["Pareto front"].x) == [60, 400]
    assert [c[0] for c in members.customdata] == [1, 5]
    assert list(members.error_y.array) == pytest.approx([0.0, 0.01])
    assert members.error_x.array is None  # flops is the architecture's: no spread
    fallen = traces["off the front since the search"]
    assert [c[0] for c in fallen.customdata] == [3]
    assert fallen.marker.symbol == "diamond-open"
    assert list(fallen.error_y.array) == pytest.approx([0.02])
    assert "means of %{customdata[6]} seeds" in members.hovertemplate
    assert [c[6] for c in members.customdata] == [1, 3]


def test_learning_curves_take_names() -> None:
    epochs = pd.DataFrame({"trial_number": [4, 2], "epoch": [1, 1], "val_acc": [0.5, 0.3]})
    fig = curves_figure(epochs, names={4: "reference (trial 4)"})
    assert [t.name for t in fig.data] == ["trial 2", "reference (trial 4)"]
