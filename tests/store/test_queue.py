"""The queue's contract, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import optuna
import pytest

from search.config import JobConfig
from search.cost import Cost
from search.datasets import DatasetFacts
from search.design import replicate_seed
from search.store import (
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    Store,
    optuna_storage,
)
from search.store._models import Worker


def config(**overrides: object) -> JobConfig:
    return JobConfig.from_mapping(
        {"dataset": "digits", "trials": 4, "epochs": 1, "space": {"stages": 2}, **overrides}
    )


def test_submit_queues_a_job_with_its_study_name_and_config(store: Store) -> None:
    cfg = config(priority=2, name="small")
    job = store.submit(cfg)
    assert job.status == "queued"
    assert job.study_name == f"poolstride-job-{job.id}"
    assert (job.priority, job.trials_total, job.trials_done, job.attempts) == (2, 4, 0, 0)
    again = store.get_job(job.id)
    assert again.config == cfg
    assert again.created_at.tzinfo is not None
    assert abs((again.created_at - datetime.now(timezone.utc)).total_seconds()) < 60
    assert [j.id for j in store.list_jobs()] == [job.id]
    assert store.list_jobs("running") == []


def test_claim_takes_highest_priority_then_oldest(store: Store) -> None:
    ids = [store.submit(config(priority=p)).id for p in (0, 5, 5, 1)]
    claimed = [store.claim(f"w{i}", 60) for i in range(5)]
    assert [j.id if j else None for j in claimed] == [ids[1], ids[2], ids[3], ids[0], None]
    first = claimed[0]
    assert first is not None
    assert (first.status, first.worker_id, first.attempts) == ("running", "w0", 1)
    assert first.lease_expires_at is not None and first.started_at is not None
    assert first.lease_expires_at > first.started_at


def test_a_claim_retried_after_its_commit_takes_up_the_job_it_already_holds(
    store: Store,
) -> None:
    first, _ = store.submit(config()), store.submit(config())
    claimed = store.claim("w", 1)
    # the connection dropped after the commit; the worker calls claim again
    again = store.claim("w", 60)
    assert again is not None and claimed is not None
    assert (again.id, again.attempts) == (first.id, 1)
    assert again.lease_expires_at is not None and claimed.lease_expires_at is not None
    assert again.lease_expires_at > claimed.lease_expires_at
    assert [j.status for j in store.list_jobs()] == ["running", "queued"]


def test_claim_of_a_named_job(store: Store) -> None:
    a, b = store.submit(config(priority=9)), store.submit(config())
    job = store.claim("w", 60, job_id=b.id)
    assert job is not None and job.id == b.id
    assert store.claim("w2", 60, job_id=b.id) is None
    assert store.get_job(a.id).status == "queued"


def test_a_live_lease_is_not_reclaimed_an_expired_one_is(store: Store) -> None:
    job = store.submit(config())
    assert store.claim("w1", 60) is not None
    assert store.claim("w2", 60) is None

    other = store.submit(config(max_attempts=3))
    store.cancel(job.id)  # keep the first job out of the way: only the second may expire
    assert store.claim("w3", 0.2) is not None
    time.sleep(0.4)
    again = store.claim("w2", 60)
    assert again is not None and again.id == other.id
    assert (again.worker_id, again.attempts) == ("w2", 2)
    assert again.error is not None and "w3 lost its lease" in again.error
    beat = store.heartbeat("w3", other.id, 60)
    assert not beat.lease_held
    with pytest.raises(LeaseLostError):
        store.finish_job(other.id, "w3", "succeeded")
    assert store.heartbeat("w2", other.id, 60).lease_held


def test_expired_leases_use_up_attempts_then_the_job_fails(store: Store) -> None:
    job = store.submit(config(max_attempts=2))
    for attempt in (1, 2):
        claimed = store.claim(f"w{attempt}", 0.1)
        assert claimed is not None and claimed.attempts == attempt
        time.sleep(0.25)
    # claim leaves a job that may not run again to end_expired, which hands it on for clean-up
    assert store.claim("w3", 60) is None
    assert store.get_job(job.id).status == "running"
    (failed,) = store.end_expired()
    assert (failed.id, failed.status) == (job.id, "failed")
    assert failed.finished_at is not None and failed.lease_expires_at is None
    assert failed.error is not None and "w2 lost its lease" in failed.error
    assert store.get_job(job.id) == failed
    assert store.end_expired() == []  # ended once


def test_fail_attempt_requeues_until_max_attempts(store: Store) -> None:
    job = store.submit(config(max_attempts=2))
    store.claim("w", 60)
    back = store.fail_attempt(job.id, "w", "CUDA out of memory")
    assert (back.status, back.attempts, back.error, back.worker_id) == (
        "queued",
        1,
        "CUDA out of memory",
        None,
    )
    store.claim("w", 60)
    done = store.fail_attempt(job.id, "w", "CUDA out of memory again")
    assert (done.status, done.attempts, done.error) == ("failed", 2, "CUDA out of memory again")
    assert store.claim("w", 60) is None


def test_release_job_does_not_count_the_attempt(store: Store) -> None:
    job = store.submit(config())
    store.claim("w", 60)
    back = store.release_job(job.id, "w")
    assert (back.status, back.attempts, back.worker_id) == ("queued", 0, None)


def test_heartbeat_renews_the_lease(store: Store) -> None:
    job = store.submit(config())
    claimed = store.claim("w", 1)
    assert claimed is not None and claimed.lease_expires_at is not None
    beat = store.heartbeat("w", job.id, 600)
    assert beat.lease_held and not beat.cancel_requested
    renewed = store.get_job(job.id).lease_expires_at
    assert renewed is not None and (renewed - claimed.lease_expires_at).total_seconds() > 500


def test_cancel_a_queued_job_at_once(store: Store) -> None:
    job = store.submit(config())
    cancelled = store.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert store.claim("w", 60) is None
    assert store.cancel(job.id).status == "cancelled"  # again: no change, no error


def test_cancel_a_running_job_through_its_worker(store: Store) -> None:
    job = store.submit(config())
    store.claim("w", 60)
    requested = store.cancel(job.id)
    assert (requested.status, requested.cancel_requested) == ("running", True)
    beat = store.heartbeat("w", job.id, 60)
    assert beat.lease_held and beat.cancel_requested
    done = store.finish_job(job.id, "w", "cancelled")
    assert done.status == "cancelled" and done.lease_expires_at is None


def test_a_finished_job_cannot_be_cancelled(store: Store) -> None:
    job = store.submit(config())
    store.claim("w", 60)
    store.finish_job(job.id, "w", "succeeded")
    with pytest.raises(JobStateError, match="already succeeded"):
        store.cancel(job.id)


def test_an_expired_job_with_a_cancel_pending_is_cancelled_not_rerun(store: Store) -> None:
    job = store.submit(config())
    store.claim("w1", 0.1)
    store.cancel(job.id)
    time.sleep(0.25)
    assert store.claim("w2", 60) is None
    assert [j.status for j in store.end_expired()] == ["cancelled"]
    assert store.get_job(job.id).status == "cancelled"


def test_an_expired_job_with_attempts_left_is_not_ended(store: Store) -> None:
    job = store.submit(config(max_attempts=2))
    store.claim("w1", 0.1)
    time.sleep(0.25)
    assert store.end_expired() == []
    again = store.claim("w2", 60)
    assert again is not None and (again.id, again.attempts) == (job.id, 2)


def test_unknown_jobs_and_bad_arguments(store: Store) -> None:
    with pytest.raises(JobNotFoundError):
        store.get_job(999)
    with pytest.raises(JobNotFoundError):
        store.cancel(999)
    with pytest.raises(ValueError, match="unknown status"):
        store.list_jobs("done")
    with pytest.raises(ValueError, match="lease_seconds"):
        store.claim("w", 0)
    job = store.submit(config())
    with pytest.raises(ValueError, match="status"):
        store.finish_job(job.id, "w", "queued")


def test_a_worker_row_follows_its_job_and_stops(store: Store) -> None:
    worker = store.register_worker(lease_seconds=30)
    (info,) = store.list_workers()
    assert (info.id, info.status, info.current_job_id, info.lease_seconds) == (
        worker,
        "idle",
        None,
        30,
    )
    job = store.submit(config())
    store.claim(worker, 60)
    (busy,) = store.list_workers()
    assert (busy.status, busy.current_job_id) == ("busy", job.id)
    store.heartbeat(worker, job.id, 60)
    (beat,) = store.list_workers()
    assert (beat.status, beat.current_job_id) == ("busy", job.id)
    assert beat.last_heartbeat > busy.last_heartbeat
    store.finish_job(job.id, worker, "succeeded")
    (idle,) = store.list_workers()
    assert (idle.status, idle.current_job_id) == ("idle", None)
    store.worker_stopped(worker)
    (info,) = store.list_workers()
    assert (info.status, info.current_job_id) == ("stopped", None)
    assert info.last_heartbeat >= idle.last_heartbeat


def test_a_silent_worker_reads_as_lost_and_a_week_old_row_is_pruned(store: Store) -> None:
    silent = store.register_worker("silent", lease_seconds=0.1)
    store.register_worker("stopped", lease_seconds=0.1)
    store.worker_stopped("stopped")
    time.sleep(0.25)
    assert {w.id: w.status for w in store.list_workers()} == {
        silent: "lost",
        "stopped": "stopped",  # a clean exit is never lost
    }
    store.worker_heartbeat(silent)
    assert {w.id: w.status for w in store.list_workers()}[silent] == "idle"
    with store.session(write=True) as s:
        row = s.get(Worker, "stopped")
        assert row is not None
        row.last_heartbeat = datetime.now(timezone.utc) - timedelta(days=8)
    store.register_worker("new")
    assert sorted(w.id for w in store.list_workers()) == ["new", silent]


def test_a_new_job_never_gets_an_existing_optuna_study(db_url: str) -> None:
    optuna.create_study(study_name="poolstride-job-1", storage=optuna_storage(db_url))
    with Store.open(db_url) as store:
        job = store.submit(config())
    assert job.id == 1
    assert job.study_name.startswith("poolstride-job-1-")


def test_the_dataset_facts_are_recorded_once_on_the_job(store: Store) -> None:
    job = store.submit(config())
    assert job.dataset_facts is None and job.to_dict()["dataset_facts"] is None
    claimed = store.claim("w", 60)
    assert claimed is not None and claimed.dataset_facts is None
    facts = DatasetFacts(10, (1, 8, 8), (4.5,), (6.25,))
    store.record_dataset(job.id, facts)
    recorded = store.get_job(job.id)
    assert recorded.dataset_facts == facts
    assert recorded.to_dict()["dataset_facts"] == {
        "num_classes": 10,
        "input_shape": [1, 8, 8],
        "mean": [4.5],
        "std": [6.25],
    }
    store.record_dataset(job.id, facts)  # again: nothing changes, not even updated_at
    assert store.get_job(job.id) == recorded
    # every read of a job carries them
    assert store.list_jobs()[0].dataset_facts == facts
    assert store.heartbeat("w", job.id, 60).lease_held
    assert store.finish_job(job.id, "w", "succeeded").dataset_facts == facts
    other = DatasetFacts(10, (1, 8, 8), (4.0,), (6.0,))
    store.record_dataset(job.id, other)  # the data changed between attempts: the latest wins
    changed = store.get_job(job.id)
    assert changed.dataset_facts == other and changed.updated_at > recorded.updated_at
    with pytest.raises(JobNotFoundError):
        store.record_dataset(999, facts)


def test_an_ended_job_with_a_running_optuna_trial_but_no_row_is_found(
    store: Store, db_url: str
) -> None:
    job = store.submit(config())
    storage = optuna_storage(db_url)
    study = optuna.create_study(study_name=job.study_name, storage=storage)
    study.ask()  # asked, never started: no candidate row
    assert store.claim("w", 60) is not None
    assert store.ended_with_open_trials() == []
    store.finish_job(job.id, "w", "cancelled")
    assert [j.id for j in store.ended_with_open_trials()] == [job.id]


def test_the_largest_derived_seed_fits_its_column(store: Store) -> None:
    job = store.submit(config(seed=2**31 - 1))
    seeds = [replicate_seed(job.config.seed, k) for k in range(3)]
    assert all(0 <= s < 2**31 for s in seeds)
    for number, seed in enumerate(seeds):
        store.start_candidate(
            job_id=job.id,
            trial_number=number,
            optuna_trial_id=None,
            arch=next(iter(job.config.space)),
            cost=Cost(params=1, flops=1, activation_bytes=1, receptive_field=1),
            seed=seed,
            attempt=1,
            worker_id="w",
            epochs_total=1,
        )
    assert [c.seed for c in store.list_candidates(job.id)] == seeds
