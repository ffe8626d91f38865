"""Early stopping (``early_stop = "mo-asha"``) on a real local Ray, with known learning curves.

The first draws of the job's seeded sampler are replayed (``_drawn``) and each gets a curve
from a table, so which trial stops at which rung is a hand computation, written out below.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState
from ray import cloudpickle
from ray.tune.experiment import Trial

from search.cost import arch_cost
from search.halving import RungRecord
from search.query import load_front
from search.space import ArchSpec
from search.store import Store
from search.study import STOPPED_AT
from tests.workers.test_runner import _drawn, ray_instance, small_config, submit_and_run
from workers.scheduler import HalvingScheduler, Stopped, rungs_from_store
from workers.train import TrainConfig, TrainResult

pytestmark = pytest.mark.slow
cloudpickle.register_pickle_by_value(sys.modules[__name__])

__all__ = ["ray_instance"]

# val_acc at epochs 1..4 of the job's first six draws, by draw (= trial number: one at a time)
CURVES = [
    (0.50, 0.60, 0.65, 0.70),
    (0.40, 0.50, 0.55, 0.60),
    (0.70, 0.75, 0.80, 0.85),
    (0.80, 0.55, 0.60, 0.65),
    (0.30, 0.65, 0.70, 0.72),
    (0.45, 0.50, 0.55, 0.60),
]


def _curve_train(
    arch: ArchSpec,
    dataset: Any,
    config: TrainConfig,
    *,
    curves: dict[str, tuple[float, ...]],
    on_epoch: Callable[..., Any] | None = None,
    keep_weights: bool = False,
) -> TrainResult:
    """Trains nothing: reports the architecture's curve, instantly."""
    curve = curves[arch.hash()]
    for epoch in range(1, config.epochs + 1):
        if on_epoch is not None:
            on_epoch(epoch, curve[epoch - 1], 1.0 / epoch, 0.001)
    return TrainResult(
        val_acc_per_epoch=curve[: config.epochs],
        train_loss_per_epoch=tuple(1.0 / e for e in range(1, config.epochs + 1)),
        val_acc=curve[config.epochs - 1],
        test_acc=curve[config.epochs - 1],
        train_s=0.001,
        latency_ms=0.01,
        latency_batch=config.latency_batch,
        peak_mem_bytes=0,
        device="cpu",
        epochs_done=config.epochs,
        images_per_s=1.0,
        precision="fp32",
        weights=b"w" if keep_weights else None,
    )


def test_mo_asha_stops_by_the_hand_computed_rule_and_keeps_a_cheap_front_member(
    ray_instance, tmp_path: Path
) -> None:
    config = small_config(trials=6, epochs=4, eta=2, concurrency=1, seeds=2, keep_weights="all")
    assert (config.early_stop, config.min_epochs) == ("mo-asha", 1)  # the default at 4 epochs
    drawn = _drawn(config, 6)
    flops = [arch_cost(a, input_shape=(1, 8, 8), num_classes=10).flops for a in drawn]
    # what the hand computation assumes of the draws: t4 is the cheapest, then t0, t1, t2, t5, t3
    assert sorted(range(6), key=flops.__getitem__) == [4, 0, 1, 2, 5, 3], flops
    curves = {a.hash(): c for a, c in zip(drawn, CURVES, strict=True)}

    def train_fn(*args: Any, **kw: Any) -> TrainResult:
        return _curve_train(*args, curves=curves, **kw)

    store, job, outcome, study = submit_and_run(
        f"sqlite:///{tmp_path / 'ps.db'}", config, train_fn=train_fn, weights_dir=tmp_path / "w"
    )
    assert outcome.status == "succeeded", outcome.error

    # Rungs at epochs 1 and 2 (1 * 2**k below 4); n records keep ceil(n / 2); ranked by
    # fronts over (val_acc, flops), then crowding distance, then order of arrival.
    # rung 1: t0 (n=1) continues. t1 (n=2, keep 1): dominated by t0, stops.
    #   t2 (n=3, keep 2): front {t0, t2}: continues.
    #   t3 (n=4, keep 2): front {t0, t2, t3}, ends t0 and t3 first: continues.
    #   t4 (n=5, keep 3): the cheapest, least accurate; front {t4, t0, t2, t3}, ends t3 and t4
    #     first: continues. t5 (n=6, keep 3): dominated by t0, stops.
    # rung 2: t0 (n=1) continues. t2 (n=2, keep 1): front {t0, t2}, both ends, t0 came first:
    #   stops. t3 (n=3, keep 2): 0.55 at the most flops, dominated by both: stops.
    #   t4 (n=4, keep 2): 0.65 at the fewest flops dominates t0; front {t4, t2}: continues.
    stopped = {t.number: t.user_attrs.get(STOPPED_AT) for t in study.trials}
    search = [t for t in study.trials if t.user_attrs["phase"] == "search"]
    assert {t.number: stopped[t.number] for t in search} == {
        0: None,
        1: 1,
        2: 2,
        3: 2,
        4: None,
        5: 1,
    }
    # the budget counts the stopped ones: six candidates evaluated, no more asked
    assert len(search) == 6
    rows = {r.trial_number: r for r in store.list_candidates(job.id)}
    for t in search:
        row = rows[t.number]
        if stopped[t.number] is None:
            assert (t.state, row.state, row.epochs_done) == (TrialState.COMPLETE, "complete", 4)
            continue
        epoch = stopped[t.number]
        assert (t.state, t.values) == (TrialState.PRUNED, None)
        assert t.user_attrs["val_acc"] == CURVES[t.number][epoch - 1]
        assert t.user_attrs["epochs_done"] == epoch
        assert (row.state, row.stopped_at, row.epochs_done) == ("pruned", epoch, epoch)
        assert row.error is None  # not a cancel
        assert row.val_acc == CURVES[t.number][epoch - 1]
        # never on a front, never kept
        assert not (tmp_path / "w" / f"trial-{t.number}.pt").exists()
    # the confirm phase trains the front's member (t4, the cheap one) fully with a new seed,
    # though its first epoch is the worst of all: only search trials are ever stopped
    [confirm] = [t for t in study.trials if t.user_attrs["phase"] == "confirm"]
    assert (confirm.state, rows[confirm.number].epochs_done) == (TrialState.COMPLETE, 4)
    assert drawn[4].hash() == confirm.user_attrs["arch_hash"]

    # no PRUNED trial is COMPLETE in Optuna or on a front
    pruned = {t.number for t in study.trials if t.state == TrialState.PRUNED}
    assert pruned == {1, 2, 3, 5}
    assert not pruned & {t.number for t in study.best_trials}
    members = load_front(store, job.id).members
    assert not pruned & {n for trials in members["trials"] for n in trials}
    info = store.get_job(job.id)
    assert (info.trials_done, info.trials_total) == (6, 6)


def test_a_resumed_job_rebuilds_its_rungs_from_the_epoch_rows_counting_a_re_run_once(
    tmp_path: Path,
) -> None:
    # no Ray: the rows a first attempt left, then the scheduler a second attempt builds
    config = small_config(trials=6, epochs=4, eta=2)
    store = Store.open(f"sqlite:///{tmp_path / 'ps.db'}", create=True)
    job = store.submit(config)
    archs = _drawn(config, 3)

    def row(number: int, arch: ArchSpec, curve: tuple[float, ...], **kw: Any) -> int:
        cid = store.start_candidate(
            job_id=job.id,
            trial_number=number,
            optuna_trial_id=None,
            arch=arch,
            cost=arch_cost(arch, input_shape=(1, 8, 8), num_classes=10),
            seed=kw.pop("seed", 7),
            attempt=1,
            worker_id="w",
            epochs_total=4,
            **kw,
        )
        for epoch, acc in enumerate(curve, 1):
            store.record_epoch(
                candidate_id=cid, epoch=epoch, val_acc=acc, train_loss=1.0, seconds=0.1
            )
        return cid

    first = row(0, archs[0], (0.5, 0.6, 0.7, 0.8))
    store.finish_candidate(candidate_id=first, state="complete")
    # trial 1 reached epoch 2 when its worker died; trial 2 re-runs it (same architecture and
    # seed) and has reached epoch 1 again, with another value
    lost = row(1, archs[1], (0.4, 0.9))
    store.finish_candidate(candidate_id=lost, state="failed", error="worker lost")
    row(2, archs[1], (0.95,))
    # neither a cached copy nor a confirm training is a record
    row(3, archs[0], (), cached_from=first)
    row(4, archs[2], (0.1, 0.1), phase="confirm", replicate=1, seed=8)

    rungs = rungs_from_store(
        store, job.id, objectives=config.objectives, min_epochs=1, eta=2, epochs=4
    )
    flops = [float(arch_cost(a, input_shape=(1, 8, 8), num_classes=10).flops) for a in archs]
    assert rungs.epochs == (1, 2)
    assert rungs.records(1) == [RungRecord(0.5, (flops[0],)), RungRecord(0.4, (flops[1],))]
    assert rungs.records(2) == [RungRecord(0.6, (flops[0],)), RungRecord(0.9, (flops[1],))]

    scheduler = HalvingScheduler(rungs=rungs, objectives=config.objectives)

    def result(number: int, arch: ArchSpec, epoch: int, acc: float, seed: int = 7) -> str:
        trial = Trial(
            "fake",
            config={
                "arch": arch.to_dict(),
                "seed": seed,
                "trial_number": number,
                "phase": "search",
                "costs": {"flops": arch_cost(arch, input_shape=(1, 8, 8), num_classes=10).flops},
                "epochs": 4,
            },
            trial_id=f"t{number}",
            stub=True,
        )
        return scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_acc": acc})

    # the re-run reaching epoch 2 is decided on the two records there, itself counted once
    # with its first value: (0.9, flops[1]) beside (0.6, flops[0]) with fewer flops, one front,
    # n=2 keeps 1, both ends, trial 0 recorded first: it stops, and the rung still holds two
    assert flops[0] < flops[1]
    assert result(2, archs[1], 2, 0.2) == "STOP"
    assert scheduler.stopped["t2"] == Stopped(2, 0.2)
    assert len(rungs.records(2)) == 2
    # a new training is a third record
    result(5, archs[2], 1, 0.3, seed=9)
    assert len(rungs.records(1)) == 3


def test_a_repeat_of_a_stopped_training_is_pruned_again_without_training(
    ray_instance, tmp_path: Path
) -> None:
    # two architectures in the space, five candidates: the random sampler repeats them
    space = {"stages": 1, "widths": [4], "downsample": ["max", "avg"], "kernel": [3]}
    config = small_config(
        trials=5, epochs=4, eta=2, concurrency=1, space={**space, "skip": ["none"]}
    )
    drawn = _drawn(config, 5)
    first, second = drawn[0], next(a for a in drawn if a != drawn[0])
    assert sum(a == second for a in drawn) >= 2, "the draws repeat the one that stops"
    # equal FLOPs (pooling counts none): the second, less accurate, is dominated at rung 1
    curves = {first.hash(): (0.8, 0.85, 0.9, 0.95), second.hash(): (0.3, 0.35, 0.4, 0.45)}

    def train_fn(*args: Any, **kw: Any) -> TrainResult:
        return _curve_train(*args, curves=curves, **kw)

    store, job, outcome, study = submit_and_run(
        f"sqlite:///{tmp_path / 'ps.db'}", config, train_fn=train_fn
    )
    assert outcome.status == "succeeded", outcome.error
    rows = store.list_candidates(job.id)
    # each architecture trained once; every repeat was served, the stopped one's as pruned
    trained = [r for r in rows if r.cached_from is None]
    assert sorted(r.arch_hash for r in trained) == sorted([first.hash(), second.hash()])
    [stopped] = [r for r in trained if r.arch_hash == second.hash()]
    assert (stopped.state, stopped.stopped_at) == ("pruned", 1)
    for row in rows:
        if row.arch_hash == second.hash():
            assert (row.state, row.stopped_at, row.val_acc) == ("pruned", 1, 0.3)
            assert row.cached_from in (None, stopped.id)
        else:
            assert row.state == "complete"
    assert len(rows) == 5 and store.get_job(job.id).trials_done == 5
    assert all(t.state != TrialState.COMPLETE for t in study.trials if STOPPED_AT in t.user_attrs)
