"""The rule of early stopping (search.halving): rungs, ranking, the crowding tie-break, the
cut-off of the trials recorded so far, and val_acc alone where no cost is known."""

from __future__ import annotations

import numpy as np
import pytest

from search.halving import (
    RungRecord,
    Rungs,
    continues,
    crowding_distance,
    keep_count,
    known_costs,
    rank,
    rung_epochs,
)


def test_rungs_are_min_epochs_times_powers_of_eta_below_the_epochs() -> None:
    assert rung_epochs(min_epochs=1, eta=3, epochs=27) == (1, 3, 9)
    assert rung_epochs(min_epochs=1, eta=3, epochs=28) == (1, 3, 9, 27)
    assert rung_epochs(min_epochs=2, eta=3, epochs=20) == (2, 6, 18)
    assert rung_epochs(min_epochs=4, eta=2, epochs=4) == ()
    with pytest.raises(ValueError, match="eta 1"):
        rung_epochs(min_epochs=1, eta=1, epochs=9)


def test_the_first_n_over_eta_continue_and_always_the_first() -> None:
    assert [keep_count(n, eta=3) for n in (1, 2, 3, 5, 6, 9, 10)] == [1, 1, 1, 2, 2, 3, 4]
    rungs = Rungs(epochs=(1,), eta=3)
    # accuracy only: each newcomer worse than the first stops until 6 are recorded
    got = [
        rungs.add(epoch=1, training=i, record=RungRecord(acc))
        for i, acc in enumerate([0.5, 0.4, 0.3, 0.2, 0.1, 0.45])
    ]
    # the sixth (0.45) is second of six, and ceil(6 / 3) = 2 continue
    assert got == [True, False, False, False, False, True]


def test_ranking_is_by_fronts_over_accuracy_and_known_costs() -> None:
    records = [
        RungRecord(0.9, (100.0,)),  # front 1 (most accurate)
        RungRecord(0.5, (10.0,)),  # front 1 (cheapest)
        RungRecord(0.4, (130.0,)),  # front 3: dominated by all, 4 included
        RungRecord(0.6, (40.0,)),  # front 1 (interior)
        RungRecord(0.8, (120.0,)),  # front 2: dominated by 0 only
    ]
    order = rank(records)
    assert set(order[:3]) == {0, 1, 3}
    assert order[3:] == [4, 2]
    # the ends of a front come before its interior; equal distances in order of recording
    assert order[:3] == [0, 1, 3]
    # with accuracy alone the cheap one would be fourth
    assert rank([RungRecord(r.val_acc) for r in records]) == [0, 4, 3, 1, 2]


def test_crowding_breaks_ties_inside_a_front() -> None:
    # a front of four on (-acc, flops): the ends, then the interior point with more room
    records = [
        RungRecord(0.9, (100.0,)),
        RungRecord(0.85, (90.0,)),  # crowded next to the first
        RungRecord(0.5, (10.0,)),
        RungRecord(0.7, (50.0,)),  # in the middle of the gap
    ]
    losses = np.array([(-r.val_acc, *r.costs) for r in records])
    distance = crowding_distance(losses)
    assert np.isinf(distance[[0, 2]]).all()
    assert distance[3] > distance[1]
    assert rank(records) == [0, 2, 3, 1]
    # 4 records at eta 2: two continue, the ends
    assert [continues(records, i, eta=2) for i in range(4)] == [True, False, True, False]


def test_an_objective_equal_over_a_front_adds_no_crowding() -> None:
    distance = crowding_distance(np.array([[-0.5, 7.0], [-0.5, 7.0]]))
    assert distance.tolist() == [0.0, 0.0]
    assert rank([RungRecord(0.5, (7.0,)), RungRecord(0.5, (7.0,))]) == [0, 1]


def test_a_re_run_is_recorded_once_with_its_first_value() -> None:
    rungs = Rungs(epochs=(1, 3), eta=2)
    assert rungs.add(epoch=1, training=("a", 1), record=RungRecord(0.6))
    assert not rungs.add(epoch=1, training=("b", 1), record=RungRecord(0.5))
    # b again (a lost worker's re-run) with a better value: still b's first, still stopped
    assert not rungs.add(epoch=1, training=("b", 1), record=RungRecord(0.9))
    assert rungs.records(1) == [RungRecord(0.6), RungRecord(0.5)]
    assert rungs.records(3) == []


def test_only_the_objectives_known_before_training_rank() -> None:
    cost = {"flops": 5, "params": 7, "activation_bytes": 9, "receptive_field": 11}
    assert known_costs(("val_acc", "latency_ms", "params", "flops"), cost) == {
        "params": 7,
        "flops": 5,
    }
    assert known_costs(("val_acc", "train_s"), cost) == {}
    with pytest.raises(ValueError, match="same costs"):
        rank([RungRecord(0.5, (1.0,)), RungRecord(0.5)])
