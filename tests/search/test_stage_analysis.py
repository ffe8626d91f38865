"""The per-stage answer on the known rows, every number worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _known import frame_rows

from search.analysis import bootstrap_ci, describe_effect, paired_effects, stage_analysis
from search.query import to_records


def known() -> pd.DataFrame:
    return pd.DataFrame(frame_rows())


def _row(table: pd.DataFrame, stage: int, choice: str, value: object) -> dict[str, object]:
    hit = table[(table.stage == stage) & (table.choice == choice) & (table.value == value)]
    assert len(hit) == 1, (stage, choice, value)
    return hit.iloc[0].to_dict()


def test_stage_one_downsample_by_hand() -> None:
    table = stage_analysis(known())
    # complete rows with s1.downsample == max: trials 0, 2, 4, 7 (6 failed)
    mx = _row(table, 1, "downsample", "max")
    assert mx["count"] == 4
    assert mx["val_acc_mean"] == pytest.approx((0.80 + 0.85 + 0.70 + 0.78) / 4)
    assert mx["flops_mean"] == pytest.approx((100 + 200 + 150 + 100) / 4)
    assert mx["params_mean"] == pytest.approx((10 + 20 + 5 + 10) / 4)
    # the (val_acc, flops) front is trials 5 (avg), 3 and 1 (strided)
    assert mx["front_share"] == 0.0
    st = _row(table, 1, "downsample", "strided")
    assert (st["count"], st["front_share"]) == (2, pytest.approx(2 / 3))
    assert st["val_acc_mean"] == pytest.approx(0.84)
    # bootstrap means of {0.82, 0.86} are 0.82, 0.84 or 0.86 with chances 1/4, 1/2, 1/4:
    # the 2.5 % and 97.5 % quantiles of 1000 of them are the extremes
    assert (st["val_acc_lo"], st["val_acc_hi"]) == (pytest.approx(0.82), pytest.approx(0.86))
    avg = _row(table, 1, "downsample", "avg")
    assert (avg["count"], avg["front_share"]) == (1, pytest.approx(1 / 3))
    assert (avg["val_acc_lo"], avg["val_acc_hi"]) == (pytest.approx(0.9), pytest.approx(0.9))
    # front shares of one stage choice add up to 1
    shares = table[(table.stage == 1) & (table.choice == "downsample")]["front_share"]
    assert shares.sum() == pytest.approx(1.0)


def test_rows_cover_every_present_value_in_the_space_order() -> None:
    table = stage_analysis(known())
    s2 = table[(table.stage == 2) & (table.choice == "downsample")]
    assert s2["value"].tolist() == ["max", "avg", "conv"]  # the space's order, strided absent
    kernels = table[(table.stage == 1) & (table.choice == "kernel")]
    assert kernels["value"].tolist() == [3, 5, 7]
    assert kernels["count"].tolist() == [4, 2, 1]  # trials 0,1,4,7 / 2,3 / 5


def test_paired_effects_by_hand() -> None:
    effects = paired_effects(known())
    # only two single-choice differences exist: s1.downsample max->strided, s1.kernel 3->5
    assert [
        (r.stage, r.choice, r.baseline, r.alternative, r.pairs) for r in effects.itertuples()
    ] == [(1, "downsample", "max", "strided", 2), (1, "kernel", 3, 5, 2)]
    ds = effects.iloc[0]
    # pair A: trials 0 and 7 (same architecture, mean 0.79) vs trial 1 (0.82): +0.03, flops 0.6x
    # pair B: trial 2 (0.85) vs trial 3 (0.86): +0.01, flops 0.6x
    assert ds["delta_val_acc"] == pytest.approx(0.02)
    assert (ds["delta_val_acc_lo"], ds["delta_val_acc_hi"]) == (
        pytest.approx(0.01),
        pytest.approx(0.03),
    )
    assert ds["flops_change_pct"] == pytest.approx(-40.0)
    assert ds["params_change_pct"] == pytest.approx(0.0)
    k = effects.iloc[1]
    assert k["delta_val_acc"] == pytest.approx(((0.85 - 0.79) + (0.86 - 0.82)) / 2)
    assert k["flops_change_pct"] == pytest.approx(100.0)
    assert describe_effect(ds.to_dict()) == (
        "stage 1: strided instead of max changes val_acc by +0.0200 ± 0.0100 and FLOPs by "
        "-40.0% (2 pairs)"
    )
    assert describe_effect(k.to_dict()).startswith("stage 1: kernel 5 instead of 3 changes")


def test_bootstrap_is_seeded_and_matches_the_percentile_recipe() -> None:
    values = np.array([0.1, 0.4, 0.35, 0.8, 0.6, 0.55])
    rng = np.random.default_rng(3)
    means = values[rng.integers(0, 6, size=(500, 6))].mean(axis=1)
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    assert bootstrap_ci(values, resamples=500, seed=3) == pytest.approx(expected)
    assert bootstrap_ci(values) == bootstrap_ci(values)  # deterministic
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean() < hi


def test_large_groups_use_the_normal_interval() -> None:
    values = np.random.default_rng(0).normal(0.5, 0.1, size=20_000)
    lo, hi = bootstrap_ci(values)
    half = 1.959963984540054 * values.std(ddof=1) / np.sqrt(len(values))
    assert (lo, hi) == (pytest.approx(values.mean() - half), pytest.approx(values.mean() + half))


def test_a_single_pair_gets_an_effect_but_no_interval() -> None:
    # trials 2 (0.85) and 3 (0.86) differ in s1.downsample only: drop pair A (trials 0, 1, 7)
    rows = known()
    effects = paired_effects(rows[~rows["trial"].isin([0, 1, 7])])
    ds = effects[(effects.choice == "downsample") & (effects.stage == 1)].iloc[0]
    assert ds["pairs"] == 1 and ds["delta_val_acc"] == pytest.approx(0.01)
    assert np.isnan(ds["delta_val_acc_lo"]) and np.isnan(ds["delta_val_acc_hi"])
    assert describe_effect(ds.to_dict()) == (
        "stage 1: strided instead of max changes val_acc by +0.0100 and FLOPs by -40.0% "
        "(1 pair: too few for an interval)"
    )


def test_the_sentence_of_a_json_record_without_interval() -> None:
    rows = known()
    [record] = [
        r
        for r in to_records(paired_effects(rows[~rows["trial"].isin([0, 1, 7])]))
        if r["choice"] == "downsample"
    ]
    assert record["delta_val_acc_lo"] is None
    assert describe_effect(record).endswith("(1 pair: too few for an interval)")
