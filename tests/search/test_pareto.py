"""Pareto fronts and hypervolume on frames whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _known import frame_rows

from search.pareto import (
    architecture_front,
    architecture_means,
    hypervolume,
    hypervolume_history,
    pareto_front,
    pareto_mask,
)

OBJ = ["val_acc", "flops"]


def known() -> pd.DataFrame:
    return pd.DataFrame(frame_rows())


def test_two_objective_front_of_the_known_rows() -> None:
    # trial 1 (0.82, 60) dominates 0, 4 and 7; trial 3 (0.86, 120) dominates 2; the failed
    # trial 6 has no val_acc and is left out; 5 is the most accurate
    front = pareto_front(known(), OBJ)
    assert front["trial"].tolist() == [5, 3, 1]  # best val_acc first


def test_three_objective_front_adds_the_cheapest_in_params() -> None:
    # trial 4 has the fewest params (5): nobody dominates it once params count
    front = pareto_front(known(), ["val_acc", "flops", "params"])
    assert sorted(front["trial"]) == [1, 3, 4, 5]


def test_hypervolume_of_the_known_rows_by_hand() -> None:
    # losses: 1 - val_acc (reference 1) and flops / max flops 400 (reference 1.1)
    front = [(1 - 0.90, 400 / 400), (1 - 0.86, 120 / 400), (1 - 0.82, 60 / 400)]
    by_hand, upper = 0.0, 1.1
    for u0, u1 in front:  # sorted by the first loss: a staircase of rectangles
        by_hand += (1.0 - u0) * (upper - u1)
        upper = u1
    assert by_hand == pytest.approx(0.09 + 0.602 + 0.123)
    assert hypervolume(known(), OBJ) == pytest.approx(by_hand)


def test_hypervolume_in_three_objectives_is_the_union_of_boxes() -> None:
    # two points, losses a = (0.2, 0.5, 0.5) and b = (0.5, 0.25, 0.25) (flops and params / 100)
    df = pd.DataFrame(
        {
            "trial": [0, 1, 2],
            "val_acc": [0.8, 0.5, 0.5],
            "flops": [50, 25, 100],
            "params": [50, 25, 100],
        }
    )
    ref = np.array([1.0, 1.1, 1.1])
    a, b = np.array([0.2, 0.5, 0.5]), np.array([0.5, 0.25, 0.25])
    box = lambda p: float(np.prod(ref - p))  # noqa: E731
    by_hand = box(a) + box(b) - box(np.maximum(a, b))  # inclusion-exclusion
    assert hypervolume(df, ["val_acc", "flops", "params"]) == pytest.approx(by_hand)


def test_history_grows_and_counts_the_front() -> None:
    history = hypervolume_history(known(), OBJ)
    assert history["trial"].tolist() == [0, 1, 2, 3, 4, 5, 7]
    # trial 1 replaces 0; 2 joins; 3 replaces 2; 4 dominated; 5 joins; 7 dominated
    assert history["front_size"].tolist() == [1, 1, 2, 2, 2, 3, 3]
    assert history["hypervolume"].is_monotonic_increasing
    assert history["hypervolume"].iloc[-1] == pytest.approx(hypervolume(known(), OBJ))
    # after trial 0 alone: one box (1 - 0.2) x (1.1 - 100/400)
    assert history["hypervolume"].iloc[0] == pytest.approx(0.8 * 0.85)


def test_ties_stay_on_the_front_and_empty_frames_are_empty() -> None:
    df = pd.DataFrame({"trial": [0, 1, 2], "val_acc": [0.9, 0.9, 0.5], "flops": [10, 10, 20]})
    assert sorted(pareto_front(df, OBJ)["trial"]) == [0, 1]
    empty = df.iloc[0:0]
    assert pareto_front(empty, OBJ).empty
    assert hypervolume(empty, OBJ) == 0.0


def test_mask_matches_brute_force_on_random_points() -> None:
    rng = np.random.default_rng(1)
    for k in (2, 3, 4):
        pts = rng.integers(0, 6, size=(300, k)).astype(float)  # many ties
        brute = np.array([not any(np.all(q <= p) and np.any(q < p) for q in pts) for p in pts])
        assert np.array_equal(pareto_mask(pts), brute), k


def test_unknown_objective_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        pareto_front(known(), ["val_acc", "nope"])


def _slicing_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """The exact slicing recursion poolstride used before moocore: the oracle below."""
    points = points[np.all(points < ref, axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    order = np.argsort(points[:, -1], kind="stable")
    pts = points[order]
    cuts = np.r_[pts[:, -1], ref[-1]]
    volume = 0.0
    for i in range(len(pts)):
        depth = cuts[i + 1] - cuts[i]
        if depth > 0:
            below = pts[: i + 1, :-1]
            volume += depth * _slicing_hv(below[pareto_mask(below)], ref[:-1])
    return volume


@pytest.mark.parametrize("k", [3, 4, 5])
@pytest.mark.parametrize("seed", range(4))
def test_many_objective_hypervolume_equals_the_slicing_recursion(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # points near a sphere make large fronts; duplicates and points beyond the reference too
    raw = rng.random((40, k))
    raw = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    raw = np.vstack([raw, raw[:3], np.full((1, k), 1.2)])
    names = ["val_acc", "flops", "params", "activation_bytes", "latency_ms"][:k]
    df = pd.DataFrame({n: raw[:, i] for i, n in enumerate(names)})
    df["val_acc"] = 1.0 - df["val_acc"]  # a maximised accuracy, loss 1 - value
    losses = np.column_stack(
        [1.0 - df["val_acc"], *(df[n] / df[n].max() for n in names[1:])]
    ).astype(np.float64)
    ref = np.array([1.0, *([1.1] * (k - 1))])
    expected = _slicing_hv(np.unique(losses[pareto_mask(losses)], axis=0), ref)
    assert expected > 0
    assert hypervolume(df, names) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    history = hypervolume_history(df.assign(trial=range(len(df))), names)
    assert history["hypervolume"].iloc[-1] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert history["hypervolume"].is_monotonic_increasing


def seeded(rows: list[tuple[str, int, int, float, int]]) -> pd.DataFrame:
    """Rows (arch_hash, seed, replicate, val_acc, flops), trial numbers in order."""
    return pd.DataFrame(
        [
            {
                "trial": t,
                "state": "complete",
                "arch_hash": a,
                "seed": s,
                "replicate": r,
                "val_acc": v,
                "test_acc": v - 0.01,
                "flops": f,
            }
            for t, (a, s, r, v, f) in enumerate(rows)
        ]
    )


def test_architecture_means_average_distinct_seeds_and_count_a_cached_copy_once() -> None:
    df = seeded(
        [
            ("a", 11, 0, 0.80, 100),
            ("b", 11, 0, 0.70, 50),
            ("a", 12, 1, 0.90, 100),
            ("a", 12, 1, 0.90, 100),  # the cache served seed 12 again: one seed, not two
            ("a", 13, 2, 0.70, 100),
        ]
    )
    df.loc[len(df)] = {**df.iloc[1].to_dict(), "trial": 5, "state": "failed", "val_acc": None}
    means = architecture_means(df, OBJ)
    assert means["trial"].tolist() == [0, 1]  # each architecture's lowest trial, in order
    a = means.iloc[0].to_dict()
    assert (a["n"], a["val_acc"]) == (3, pytest.approx(0.80))  # not (0.8+0.9+0.9+0.7)/4
    assert a["val_acc_std"] == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))
    assert a["test_acc"] == pytest.approx(0.79) and a["flops"] == 100
    assert a["trials"] == [0, 2, 3, 4]
    b = means.iloc[1].to_dict()
    assert (b["n"], b["trials"], np.isnan(b["val_acc_std"])) == (1, [1], True)  # failed 5 left out


def test_one_seed_per_architecture_gives_the_front_of_the_candidates() -> None:
    rows = known().assign(arch_hash=lambda d: d["trial"].astype(str), seed=0, replicate=0)
    means = architecture_means(rows, OBJ)
    front = architecture_front(means, OBJ)
    assert front["trial"].tolist() == pareto_front(known(), OBJ)["trial"].tolist() == [5, 3, 1]
    assert front["on_front"].all() and (front["n"] == 1).all()
    assert hypervolume(means, OBJ) == hypervolume(known(), OBJ)


def test_a_member_whose_mean_falls_off_the_front_is_marked() -> None:
    df = seeded(
        [
            ("lucky", 11, 0, 0.90, 100),  # on the front by its first seed...
            ("steady", 11, 0, 0.85, 100),
            ("cheap", 11, 0, 0.70, 40),
            ("lucky", 12, 1, 0.76, 100),  # ...but its mean 0.83 is below steady's
            ("steady", 12, 1, 0.85, 100),
            ("cheap", 12, 1, 0.72, 40),
        ]
    )
    front = architecture_front(
        architecture_means(df, OBJ),
        OBJ,
        first_seed=architecture_means(df[df.replicate == 0], OBJ),
    )
    assert front["arch_hash"].tolist() == ["steady", "cheap", "lucky"]
    assert front["on_front"].tolist() == [True, True, False]
    assert front["val_acc"].tolist() == pytest.approx([0.85, 0.71, 0.83])
    assert architecture_front(architecture_means(df, OBJ), OBJ)["on_front"].all()
