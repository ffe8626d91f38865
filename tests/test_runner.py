"""The runner on a real local Ray: Optuna's view and poolstride's tables agree in every case."""

from __future__ import annotations

import functools
import itertools
import math
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from ray import cloudpickle

from search.config import JobConfig
from search.store import Store, list_candidates, optuna_storage
from workers import runner
from workers.daemon import Worker
from workers.data import load_dataset
from workers.train import TrainConfig, TrainResult, train

pytestmark = pytest.mark.slow

# trial processes unpickle the injected train functions; they cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    import ray

    # short and private: Ray's socket paths must fit in 107 bytes, and no other instance is found
    temp = tempfile.mkdtemp(prefix="ps-ray-test-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def _config(**kw: Any) -> JobConfig:
    base = {
        "dataset": "digits",
        "trials": 4,
        "epochs": 1,
        "sampler": "random",
        "seed": 3,
        "concurrency": 2,
        "batch_size": 64,
        "space": {"stages": 2, "widths": [4, 8]},
    }
    return JobConfig.from_mapping({**base, **kw})


def _run(
    db_url: str, config: JobConfig, *, train_fn=train, stop=None, on_progress=None, storage=None
):
    store = Store.open(db_url, create=True)
    job = store.submit(config)
    claimed = store.claim("w-test", lease_seconds=600)
    assert claimed is not None and claimed.id == job.id
    outcome = runner.run_job(
        store=store,
        job_id=job.id,
        config=config,
        study_name=job.study_name,
        attempt=1,
        worker_id="w-test",
        storage=storage or optuna_storage(db_url),
        stop=stop,
        on_progress=on_progress,
        dataset=load_dataset("digits", seed=config.seed),
        train_fn=train_fn,
    )
    study = optuna.load_study(study_name=job.study_name, storage=optuna_storage(db_url))
    return store, job, outcome, study


def _flaky(arch: Any, dataset: Any, config: TrainConfig, **kw: Any) -> TrainResult:
    # trial numbers 1 and 2 (seed = job seed * 1_000_003 + number) go wrong in two ways
    number = config.seed - 3 * 1_000_003
    if number == 1:
        raise RuntimeError("injected failure")
    result = train(arch, dataset, config, **kw)
    return replace(result, val_acc=math.nan) if number == 2 else result


def test_failing_and_nan_trials_are_fail_and_the_budget_is_still_met(ray_instance, tmp_path):
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    progress: list[tuple[int, int]] = []
    store, job, outcome, study = _run(
        url,
        _config(trials=4),
        train_fn=_flaky,
        on_progress=lambda done, failed: progress.append((done, failed)),
    )
    assert outcome.status == "succeeded" and outcome.completed == 4
    states = {t.number: t.state for t in study.trials}
    assert sum(s == TrialState.COMPLETE for s in states.values()) == 4
    assert states[1] == TrialState.FAIL and states[2] == TrialState.FAIL
    assert "injected failure" in study.trials[1].user_attrs["error"]
    assert "non-finite" in study.trials[2].user_attrs["error"]
    assert len(study.trials) == 6
    assert progress[-1] == (4, 2)

    rows = list_candidates(store, job.id)
    by_number = {r.trial_number: r for r in rows}
    assert sorted(by_number) == [t.number for t in study.trials]
    assert by_number[1].state == "failed" and "injected failure" in by_number[1].error
    complete = [r for r in rows if r.state == "complete"]
    assert len(complete) == 4
    for row in complete:
        trial = study.trials[row.trial_number]
        assert trial.values == [row.val_acc, row.flops]
        assert row.params > 0 and row.test_acc is not None and row.epochs_done == 1
        assert row.optuna_trial_id == trial._trial_id


def test_cancel_prunes_running_trials_and_keeps_partial_metrics(ray_instance, tmp_path):
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    stop = runner.StopRequest()

    def slow(arch: Any, dataset: Any, config: TrainConfig, *, on_epoch=None, **kw) -> TrainResult:
        def report(epoch: int, acc: float, loss: float, secs: float) -> bool | None:
            on_epoch(epoch, acc, loss, secs)
            time.sleep(30)  # long enough that only the cancel ends it
            return None

        return train(arch, dataset, config, on_epoch=report, **kw)

    def cancel_after_first_epoch() -> None:
        engine = sa.create_engine(url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    if conn.execute(sa.text("select count(*) from ps_epochs")).scalar():
                        break
            except sa.exc.OperationalError:
                pass  # the job's tables are not there yet
            time.sleep(0.2)
        stop.set("cancel")

    threading.Thread(target=cancel_after_first_epoch, daemon=True).start()
    t0 = time.monotonic()
    store, job, outcome, study = _run(url, _config(trials=3, epochs=2), train_fn=slow, stop=stop)
    assert outcome.status == "cancelled"
    assert time.monotonic() - t0 < 60
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.values is None for t in pruned)
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    assert not [t for t in study.trials if t.state == TrialState.COMPLETE]
    rows = {r.trial_number: r for r in list_candidates(store, job.id)}
    for trial in pruned:
        row = rows[trial.number]
        assert row.state == "pruned" and row.error == "job cancelled"
        assert row.epochs_done == trial.user_attrs["epochs_done"]
        assert row.val_acc == trial.user_attrs.get("val_acc")
    # the trial that triggered the cancel had finished its first epoch: its accuracy is kept
    assert any(
        rows[t.number].epochs_done == 1 and rows[t.number].val_acc is not None for t in pruned
    )


def _cut_connections(
    arch: Any, dataset: Any, config: TrainConfig, *, url: str, **kw: Any
) -> TrainResult:
    """Trains, but first kills every other session on the job's PostgreSQL database."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    except psycopg.OperationalError:
        pass  # the other trial's cut got this one first; the driver's connections are what count
    return train(arch, dataset, config, **kw)


def test_lost_database_connections_lose_nothing(ray_instance, pg_url):
    store, job, outcome, study = _run(
        pg_url, _config(trials=4), train_fn=functools.partial(_cut_connections, url=pg_url)
    )
    assert outcome.status == "succeeded"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    rows = list_candidates(store, job.id)
    assert [(r.state, r.epochs_done) for r in rows] == [("complete", 1)] * 4


class _CutConnection:
    """Terminates the storage's PostgreSQL connection mid-statement, once: in the statement
    that ``at(statement, parameters)`` first picks or, with ``after_commit``, in the first
    statement after that one's transaction commits."""

    def __init__(
        self,
        engine: sa.Engine,
        url: str,
        *,
        at: Callable[[str, Any], bool],
        after_commit: bool = False,
    ) -> None:
        self.url, self.at, self.after_commit, self.state = url, at, after_commit, "watch"
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)

    def _statement(self, conn, cursor, statement, parameters, *args: Any) -> None:
        if self.state == "watch" and self.at(statement.lstrip(), parameters):
            self.state = "picked" if self.after_commit else "armed"
        if self.state == "armed":
            self.state = "done"
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as other:
                other.execute(
                    "SELECT pg_terminate_backend(%s)", (cursor.connection.info.backend_pid,)
                )

    def _commit(self, conn) -> None:
        if self.state == "picked":
            self.state = "armed"


def _runs_through(pg_url: str, storage, cut: _CutConnection) -> None:
    store, job, outcome, study = _run(pg_url, _config(trials=3, concurrency=1), storage=storage)
    assert cut.state == "done"
    assert outcome.status == "succeeded"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    rows = list_candidates(store, job.id)
    assert [(r.trial_number, r.state) for r in rows] == [(n, "complete") for n in range(3)]


def test_connection_lost_inside_ask_leaves_no_orphan_trial(ray_instance, pg_url):
    # the second trial is created, then the connection drops while ask reads it back
    storage = optuna_storage(pg_url)
    created = itertools.count(1)
    _runs_through(
        pg_url,
        storage,
        _CutConnection(
            storage.engine,
            pg_url,
            after_commit=True,
            at=lambda sql, _: sql.startswith("INSERT INTO trials ") and next(created) == 2,
        ),
    )


def test_connection_lost_while_recording_a_result_is_retried(ray_instance, pg_url):
    storage = optuna_storage(pg_url)
    _runs_through(
        pg_url,
        storage,
        _CutConnection(
            storage.engine,
            pg_url,
            at=lambda sql, params: (
                sql.startswith("INSERT INTO trial_user_attributes") and "val_acc" in str(params)
            ),
        ),
    )


def test_connection_lost_while_ending_the_job_is_retried(
    ray_instance, pg_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("POOLSTRIDE_ARTIFACTS", str(tmp_path))
    store = Store.open(pg_url, create=True)
    job = store.submit(_config(trials=2))
    worker = Worker(pg_url)
    cut = _CutConnection(
        worker.store.engine,
        pg_url,
        at=lambda sql, params: sql.startswith("UPDATE ps_jobs") and "succeeded" in str(params),
    )
    [(job_id, outcome)] = worker.run(once=True)
    assert cut.state == "done"
    assert (job_id, outcome.status) == (job.id, "succeeded")
    after = store.get_job(job.id)
    assert (after.status, after.attempts, after.trials_done) == ("succeeded", 1, 2)


def test_recover_completes_rows_whose_trial_optuna_already_holds(ray_instance, tmp_path):
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    store, job, outcome, study = _run(url, _config(trials=2))
    assert outcome.status == "succeeded"
    first = list_candidates(store, job.id)[0]
    # a worker that died between telling Optuna and writing its own row
    with store.session(write=True) as s:
        s.execute(
            sa.text("update ps_candidates set state = 'running', val_acc = null where id = :id"),
            {"id": first.id},
        )
    assert runner.recover(study, store, job.id) == 0
    again = {r.id: r for r in list_candidates(store, job.id)}[first.id]
    assert again.state == "complete"
    assert again.val_acc == study.trials[first.trial_number].values[0]
