"""Candidate writes are idempotent and the reads see them, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from search.config import JobConfig
from search.cost import arch_cost
from search.query import CANDIDATE_KEYS, load_candidates, stage_columns
from search.space import ArchSpec
from search.store import Store, epochs_frame
from search.store._models import Candidate, Epoch, Stage
from search.vocabulary import METRICS

ARCH = ArchSpec.from_dict(
    {
        "stages": [
            {"downsample": "max", "kernel": 3, "skip": "none", "width": 8},
            {"downsample": "strided", "kernel": 5, "skip": "proj", "width": 16},
        ]
    }
)
OTHER = ArchSpec.from_dict(
    {
        "stages": [
            {"downsample": "avg", "kernel": 3, "skip": "pool", "width": 8},
            {"downsample": "max", "kernel": 3, "skip": "none", "width": 16},
        ]
    }
)
SHAPE = (1, 8, 8)


def _job(store: Store) -> int:
    return store.submit(
        JobConfig.from_mapping(
            {"dataset": "digits", "trials": 3, "epochs": 2, "space": {"stages": 2}}
        )
    ).id


def _start(store: Store, job_id: int, trial: int, arch: ArchSpec = ARCH, attempt: int = 1) -> int:
    return store.start_candidate(
        job_id=job_id,
        trial_number=trial,
        optuna_trial_id=trial + 1,
        arch=arch,
        cost=arch_cost(arch, input_shape=SHAPE),
        seed=7,
        attempt=attempt,
        worker_id="w",
        epochs_total=2,
    )


def _count(store: Store, model: type) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_start_candidate_is_an_upsert_that_resets_a_rerun(store: Store) -> None:
    job = _job(store)
    cid = _start(store, job, 0)
    store.record_epoch(candidate_id=cid, epoch=1, val_acc=0.5, train_loss=1.0, seconds=0.1)
    again = _start(store, job, 0, arch=OTHER, attempt=2)
    assert again == cid
    (cand,) = store.list_candidates(job)
    assert (cand.arch_hash, cand.attempt, cand.epochs_done, cand.state) == (
        OTHER.hash(),
        2,
        0,
        "running",
    )
    assert cand.flops == arch_cost(OTHER, input_shape=SHAPE).flops
    assert _count(store, Stage) == 2 and _count(store, Epoch) == 0
    with store.session() as s:
        downsamples = s.scalars(select(Stage.downsample).order_by(Stage.stage)).all()
    assert downsamples == ["avg", "max"]


def test_epochs_upsert_and_follow_the_latest(store: Store) -> None:
    cid = _start(store, _job(store), 0)
    for _ in range(2):  # a repeated report counts once
        store.record_epoch(candidate_id=cid, epoch=1, val_acc=0.5, train_loss=1.0, seconds=0.1)
        store.record_epoch(candidate_id=cid, epoch=2, val_acc=0.7, train_loss=0.8, seconds=0.1)
    assert _count(store, Epoch) == 2
    store.record_epoch(candidate_id=cid, epoch=1, val_acc=0.55, train_loss=1.0, seconds=0.1)
    (cand,) = store.list_candidates(1)
    assert (cand.epochs_done, cand.val_acc) == (2, 0.7)
    with pytest.raises(ValueError):
        store.record_epoch(candidate_id=cid, epoch=0, val_acc=0.1, train_loss=1, seconds=1)
    with pytest.raises(LookupError):
        store.record_epoch(candidate_id=999, epoch=1, val_acc=0.1, train_loss=1, seconds=1)


def test_finish_and_trials_done_count_complete_candidates_once(store: Store) -> None:
    job = _job(store)
    a, b, c = (_start(store, job, n, arch) for n, arch in enumerate((ARCH, OTHER, ARCH)))
    store.record_epoch(candidate_id=a, epoch=2, val_acc=0.8, train_loss=0.5, seconds=0.1)
    for _ in range(2):  # finishing twice counts once
        store.finish_candidate(
            candidate_id=a, state="complete", test_acc=0.79, train_s=1.5, device="cpu"
        )
    store.finish_candidate(candidate_id=b, state="failed", error="boom", epochs_done=1)
    assert store.get_job(job).trials_done == 1
    assert store.list_jobs()[0].trials_done == 1
    done = store.list_candidates(job, state="complete")
    assert [(x.id, x.val_acc, x.test_acc, x.device) for x in done] == [(a, 0.8, 0.79, "cpu")]
    assert store.fail_running_candidates(job_id=job, error="worker lost") == 1
    (lost,) = store.list_candidates(job, state="failed")[1:]
    assert (lost.id, lost.error) == (c, "worker lost")
    with pytest.raises(ValueError):
        store.finish_candidate(candidate_id=a, state="running")


def test_early_stopped_candidates_use_the_budget_and_cancelled_ones_do_not(store: Store) -> None:
    job = _job(store)
    done, stopped, cancelled = (_start(store, job, n, ARCH) for n in range(3))
    store.finish_candidate(candidate_id=done, state="complete", val_acc=0.9, epochs_done=2)
    store.finish_candidate(candidate_id=stopped, state="pruned", val_acc=0.5, stopped_at=1)
    store.finish_candidate(candidate_id=cancelled, state="pruned", error="job cancelled")
    info = store.get_job(job)
    assert (info.trials_done, info.stopped, info.phases[0].done) == (2, 1, 2)
    assert store.list_jobs()[0].trials_done == 2
    rows = {c.id: c for c in store.list_candidates(job)}
    assert (rows[stopped].stopped_at, rows[cancelled].stopped_at) == (1, None)
    assert load_candidates(store, job, where=["stopped_at>0"])["trial"].tolist() == [1]
    with pytest.raises(ValueError, match="stopped_at 1 is for pruned candidates"):
        store.finish_candidate(candidate_id=done, state="complete", stopped_at=1)


def test_reads_as_frames_and_per_stage_sql(store: Store) -> None:
    job = _job(store)
    a = _start(store, job, 0, ARCH)
    _start(store, job, 1, OTHER)
    store.record_epoch(candidate_id=a, epoch=1, val_acc=0.6, train_loss=0.9, seconds=0.2)
    df = load_candidates(store, job)
    assert df["trial"].tolist() == [0, 1]
    # every stage key lands in its own column (the reshape names them in STAGE_KEYS order)
    assert df[stage_columns(2)].values.tolist() == [
        ["max", 3, "none", 8, 1, "strided", 5, "proj", 16, 1],
        ["avg", 3, "pool", 8, 1, "max", 3, "none", 16, 1],
    ]
    curves = epochs_frame(store, job)
    assert curves[["trial_number", "epoch", "val_acc"]].values.tolist() == [[0, 1, 0.6]]
    with store.session() as s:  # `s2.downsample = 'max'` is plain SQL on ps_stages
        hits = s.scalars(
            select(Candidate.trial_number)
            .join(Stage)
            .where(Stage.stage == 2, Stage.downsample == "max")
        ).all()
    assert hits == [1]


def test_every_metric_is_a_filter_key_on_its_own_column() -> None:
    assert list(CANDIDATE_KEYS) == [
        "trial",
        "state",
        "phase",
        "val_acc",
        "test_acc",
        "flops",
        "params",
        "activation_bytes",
        "receptive_field",
        "latency_ms",
        "train_s",
        "epochs_done",
        "latency_rel",
        "replicate",
        "seed",
        "reference",
        "cached_from",
        "gpu_share",
        "stopped_at",
    ]
    run_keys = {"phase", "replicate", "seed", "reference", "cached_from", "gpu_share", "stopped_at"}
    assert set(CANDIDATE_KEYS) == {"trial", "state", "epochs_done", *METRICS, *run_keys}
    assert all(CANDIDATE_KEYS[m] == m for m in METRICS)
