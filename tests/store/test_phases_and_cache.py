"""Phases, replicates, plans and the result cache in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from search.config import JobConfig
from search.cost import arch_cost
from search.query import load_candidates, to_records
from search.space import ArchSpec
from search.store import (
    CachedResult,
    DatabaseError,
    JobNotFoundError,
    PhaseProgress,
    Store,
    epochs_frame,
)
from search.vocabulary import CandidateState, Phase

ARCH = ArchSpec.from_dict(
    {
        "stages": [
            {"downsample": "max", "kernel": 3, "skip": "none", "width": 8},
            {"downsample": "strided", "kernel": 5, "skip": "proj", "width": 16},
        ]
    }
)
SHAPE = (1, 8, 8)
KEY = "k" * 32


def _job(store: Store, **keys: Any) -> int:
    mapping = {"dataset": "digits", "trials": 3, "epochs": 2, "space": {"stages": 2}, **keys}
    return store.submit(JobConfig.from_mapping(mapping)).id


def _trial(
    store: Store,
    job_id: int,
    trial: int,
    *,
    state: CandidateState | None = "complete",
    epochs: int = 2,
    epochs_total: int = 2,
    val_acc: float = 0.5,
    **keys: Any,
) -> int:
    """A candidate that trained ``epochs`` of ``epochs_total`` epochs and ended in ``state``
    (``None``: still running)."""
    cid = store.start_candidate(
        job_id=job_id,
        trial_number=trial,
        optuna_trial_id=None,
        arch=ARCH,
        cost=arch_cost(ARCH, input_shape=SHAPE),
        seed=keys.pop("seed", 11),
        attempt=1,
        worker_id="w",
        epochs_total=epochs_total,
        **keys,
    )
    for epoch in range(1, epochs + 1):
        store.record_epoch(
            candidate_id=cid,
            epoch=epoch,
            val_acc=val_acc * epoch / epochs,
            train_loss=1.0 / epoch,
            seconds=0.5,
        )
    if state is not None:
        store.finish_candidate(
            candidate_id=cid,
            state=state,
            val_acc=val_acc,
            test_acc=val_acc / 2,
            latency_ms=1.5,
            train_s=3.0,
            device="cpu",
        )
    return cid


def test_only_a_complete_fully_trained_real_training_is_a_cache_source(store: Store) -> None:
    first, second = _job(store), _job(store)
    assert store.find_cached(KEY) is None
    # none of these may serve the key: still running, pruned, failed, complete but stopped
    # before its last epoch, or another key's
    _trial(store, first, 0, state=None, cache_key=KEY)
    _trial(store, first, 1, state="pruned", epochs=1, cache_key=KEY)
    _trial(store, first, 2, state="failed", cache_key=KEY)
    _trial(store, first, 3, epochs=1, cache_key=KEY)
    _trial(store, first, 4, cache_key="other")
    assert store.find_cached(KEY) is None

    source = _trial(store, second, 0, val_acc=0.8, cache_key=KEY)
    later = _trial(store, second, 1, val_acc=0.7, cache_key=KEY)
    hit = store.find_cached(KEY)
    assert hit == CachedResult(
        candidate_id=source,
        job_id=second,
        trial_number=0,
        val_acc=0.8,
        test_acc=0.4,
        latency_ms=1.5,
        train_s=3.0,
        device="cpu",
        epochs_done=2,
    )
    # the oldest wins while it stands; a copy of a result is never a source
    _trial(store, first, 5, val_acc=0.7, cache_key=KEY, cached_from=later)
    store.finish_candidate(candidate_id=source, state="failed", error="redone")
    found = store.find_cached(KEY)
    assert found is not None and found.candidate_id == later
    store.finish_candidate(candidate_id=later, state="failed", error="redone")
    assert store.find_cached(KEY) is None


def test_a_cached_candidate_copies_its_source_curve_and_names_it(store: Store) -> None:
    first, second = _job(store), _job(store)
    source = _trial(store, first, 0, val_acc=0.8, cache_key=KEY)
    cid = store.start_candidate(
        job_id=second,
        trial_number=4,
        optuna_trial_id=None,
        arch=ARCH,
        cost=arch_cost(ARCH, input_shape=SHAPE),
        seed=11,
        attempt=1,
        worker_id="w",
        epochs_total=2,
        phase="confirm",
        replicate=2,
        cache_key=KEY,
        cached_from=source,
    )
    curve = ["epoch", "val_acc", "train_loss", "seconds"]
    copied = epochs_frame(store, second)
    assert copied[curve].to_dict("list") == epochs_frame(store, first)[curve].to_dict("list")
    assert copied["candidate_id"].tolist() == [cid, cid]
    (row,) = store.list_candidates(second)
    assert (row.phase, row.replicate, row.reference, row.cache_key, row.cached_from) == (
        "confirm",
        2,
        None,
        KEY,
        source,
    )
    assert (row.state, row.epochs_done) == ("running", 2)
    with pytest.raises(LookupError, match="no candidate 999"):
        _trial(store, second, 5, cached_from=999)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"phase": "explore"}, "phase 'explore' is not one of search, confirm, ablate"),
        ({"replicate": -1}, "replicate -1 must be at least 0"),
    ],
)
def test_start_candidate_refuses_an_unknown_phase_or_replicate(
    store: Store, keys: dict[str, Any], message: str
) -> None:
    job = _job(store)
    with pytest.raises(ValueError, match=message):
        _trial(store, job, 0, **keys)
    assert store.list_candidates(job) == []


def test_the_first_plan_of_a_phase_stays(store: Store) -> None:
    job = _job(store, seeds=3, ablate="all")
    assert store.get_job(job).plan is None
    store.record_plan(job, "confirm", {"total": 4})
    store.record_plan(job, "confirm", {"total": 9})  # a resumed worker planning again
    skipped = [{"stage": 2, "choice": "kernel", "value": 9, "reason": "excluded"}]
    ablate = {"total": 12, "references": [1], "skipped": skipped}
    store.record_plan(job, "ablate", ablate)
    info = store.get_job(job)
    assert info.plan == {"confirm": {"total": 4}, "ablate": ablate}
    assert [(p.name, p.total) for p in info.phases] == [
        ("search", 3),
        ("confirm", 4),
        ("ablate", 12),
    ]
    assert json.loads(json.dumps(info.to_dict()))["plan"] == info.plan
    with pytest.raises(ValueError, match="phase 'search' is not one of confirm, ablate"):
        store.record_plan(job, "search", {"total": 1})
    with pytest.raises(JobNotFoundError):
        store.record_plan(999, "confirm", {"total": 1})


def test_progress_per_phase_and_trained_and_cached_counts(store: Store) -> None:
    plain = _job(store)
    job = _job(store, seeds=2, ablate="downsample")
    assert [p.name for p in store.get_job(plain).phases] == ["search"]
    assert store.get_job(job).phases == (
        PhaseProgress("search", 0, 3, 0),
        PhaseProgress("confirm", 0, None, 0),
        PhaseProgress("ablate", 0, None, 0),
    )
    source = _trial(store, plain, 0)
    rows: list[tuple[Phase, CandidateState | None, bool]] = [
        ("search", "complete", False),
        ("search", "complete", True),  # served by the cache
        ("search", "failed", False),
        ("search", "pruned", False),
        ("confirm", "complete", False),
        ("confirm", "complete", True),
        ("confirm", "failed", False),
        ("ablate", None, False),  # running
    ]
    for trial, (phase, state, cached) in enumerate(rows):
        _trial(store, job, trial, phase=phase, state=state, cached_from=source if cached else None)
    store.record_plan(job, "confirm", {"total": 3})
    info = store.get_job(job)
    assert info.phases == (
        PhaseProgress("search", 2, 3, 1),
        PhaseProgress("confirm", 2, 3, 1),
        PhaseProgress("ablate", 0, None, 0),
    )
    # trials_done is the search phase's; a cached result is never counted as trained
    assert (info.trials_done, info.trained, info.cached) == (2, 3, 2)
    flat = json.loads(json.dumps(info.to_dict()))
    assert (flat["trained"], flat["cached"]) == (3, 2)
    assert flat["phases"][1] == {"name": "confirm", "done": 2, "total": 3, "failed": 1}
    # the queue listing counts alike, with and without a status filter
    listed = {j.id: j for j in store.list_jobs()}
    assert listed[job] == info and listed[plain].trained == 1
    assert [j.phases for j in store.list_jobs("queued")] == [
        listed[plain].phases,
        info.phases,
    ]


def test_the_frames_carry_phase_replicate_seed_and_cache_source(store: Store) -> None:
    job = _job(store, seeds=2, ablate="all")
    source = _trial(store, job, 0, seed=5)
    _trial(store, job, 1, phase="confirm", replicate=1, seed=6)
    _trial(store, job, 2, phase="ablate", replicate=1, seed=6, reference=0, cached_from=source)
    frame = load_candidates(store, job)
    run = ["phase", "replicate", "seed", "reference", "cached_from", "gpu_share", "stopped_at"]
    columns = list(frame.columns)
    assert columns[columns.index("latency_rel") + 1 : columns.index("arch_hash")] == run
    records = [list(r.values()) for r in to_records(frame[["trial", *run]])]
    assert records == [
        [0, "search", 0, 5, None, None, None, None],
        [1, "confirm", 1, 6, None, None, None, None],
        [2, "ablate", 1, 6, 0, source, None, None],
    ]

    def trials(*where: str) -> list[int]:
        return load_candidates(store, job, where=where)["trial"].tolist()

    assert trials("phase=confirm") == [1]
    assert trials("phase!=search", "replicate=1") == [1, 2]
    assert trials("seed>5") == [1, 2]
    assert trials("cached_from>0") == [2]
    assert trials("reference=0") == [2]
    with pytest.raises(ValueError, match="phase is one of search, confirm, ablate"):
        load_candidates(store, job, where=["phase=explore"])
    with pytest.raises(ValueError, match="phase takes = or != only"):
        load_candidates(store, job, where=["phase>search"])


def test_a_cache_source_outlives_no_copy_of_it(store: Store) -> None:
    first, second = _job(store), _job(store)
    source = _trial(store, first, 0, cache_key=KEY)
    _trial(store, second, 0, cache_key=KEY, cached_from=source)
    # deleting the source's job would leave the copy naming nothing: the database refuses
    with pytest.raises(DatabaseError), store.session() as s:
        s.execute(text("DELETE FROM ps_jobs WHERE id = :id"), {"id": first})
    assert [c.cached_from for c in store.list_candidates(second)] == [source]
    # the two go together
    with store.session() as s:
        s.execute(text("DELETE FROM ps_jobs"))
    assert store.list_jobs() == []


def test_a_training_stopped_early_is_found_for_its_own_job_only(store: Store) -> None:
    job, other = _job(store), _job(store)
    assert store.find_stopped(KEY, job_id=job) is None
    _trial(store, job, 0, state="pruned", epochs=1, cache_key=KEY)  # a cancel: no stopped_at
    stopped = _trial(store, job, 1, state=None, epochs=1, val_acc=0.4, cache_key=KEY)
    store.finish_candidate(candidate_id=stopped, state="pruned", stopped_at=1)
    _trial(store, job, 2, state="pruned", epochs=1, cache_key=KEY, cached_from=stopped)
    hit = store.find_stopped(KEY, job_id=job)
    assert hit is not None
    assert (hit.candidate_id, hit.stopped_at, hit.epochs_done, hit.val_acc) == (stopped, 1, 1, 0.4)
    assert store.find_stopped(KEY, job_id=other) is None
    # never a result to complete a training with
    assert store.find_cached(KEY) is None
