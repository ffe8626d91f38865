"""The runner on a real local Ray: Optuna's view and poolstride's tables agree in every case.

The helpers here (``ray_instance``, ``small_config``, ``submit_and_run``, ``fake_train``) are
shared with the other runner tests (``test_phases``, ``test_cache``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from ray import cloudpickle
from ray.tune.experiment import Trial

from search.config import JobConfig
from search.space import ArchSpec
from search.store import Store, optuna_storage
from search.study import open_study
from search.vocabulary import FINAL_STATUSES
from workers.daemon import Worker
from workers.data import load_dataset
from workers.ray_session import ray_session
from workers.recorder import Recorder
from workers.runner import device_memory, run_job
from workers.searcher import StopRequest
from workers.train import TrainConfig, TrainResult, train

pytestmark = pytest.mark.slow

# trial processes unpickle the injected train functions; they cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_instance():
    # the worker's own session: a private instance no other test run finds
    with ray_session(num_cpus=2):
        yield


def small_config(**kw: Any) -> JobConfig:
    """A job on digits small enough to train in a second; ``kw`` overrides its keys."""
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


def submit_and_run(
    db_url: str,
    config: JobConfig,
    *,
    train_fn=train,
    stop=None,
    on_progress=None,
    storage=None,
    weights_dir=None,
    artifacts=None,
    dataset=None,
    start_ray=None,
):
    """Submit ``config``, claim it and run it here; ``(store, job, outcome, study)``.

    ``weights_dir`` is the job's weights folder; ``artifacts`` instead gives the folder that
    holds one ``job-<id>`` folder per job. ``dataset`` defaults to digits split by the job's seed.
    ``start_ray`` is called if something must train.
    """
    store = Store.open(db_url, create=True)
    job = store.submit(config)
    claimed = store.claim("w-test", lease_seconds=600, job_id=job.id)
    assert claimed is not None and claimed.id == job.id
    outcome = run_job(
        store=store,
        job_id=job.id,
        config=config,
        study_name=job.study_name,
        attempt=1,
        worker_id="w-test",
        storage=storage or optuna_storage(db_url),
        stop=stop,
        on_progress=on_progress,
        dataset=dataset or load_dataset("digits", seed=config.seed),
        train_fn=train_fn,
        weights_dir=artifacts / f"job-{job.id}" if artifacts is not None else weights_dir,
        start_ray=start_ray,
    )
    if outcome.status in FINAL_STATUSES:  # as the worker does: the next job can be claimed
        store.finish_job(job.id, "w-test", status=outcome.status, error=outcome.error)
    study = optuna.load_study(study_name=job.study_name, storage=optuna_storage(db_url))
    return store, job, outcome, study


def _score(arch: ArchSpec, seed: int) -> float:
    # a fixed accuracy per architecture and seed, in [0.5, 0.75]
    return 0.5 + hashlib.sha256(f"{arch.hash()}/{seed}".encode()).digest()[0] / 1020


def fake_train(
    arch: ArchSpec,
    dataset: Any,
    config: TrainConfig,
    *,
    on_epoch: Callable[..., Any] | None = None,
    keep_weights: bool = False,
    accuracy: Callable[[ArchSpec, int], float] = _score,
    calls: Path | None = None,
) -> TrainResult:
    """A training that trains nothing: ``accuracy(arch, seed)`` (which may raise) every epoch,
    instantly. Each call appends the training it was asked for (architecture hash, seed and
    the settings it got) as a JSON line to ``calls``; the weights are ``b"HASH/SEED"``."""
    acc = accuracy(arch, config.seed)
    if calls is not None:
        line = {
            "arch": arch.hash(),
            "seed": config.seed,
            "device": config.device,
            "bf16": config.bf16,
            "channels_last": config.channels_last,
            "lr": config.lr,
        }
        with calls.open("a") as fh:  # one short append per call: whole lines across processes
            fh.write(json.dumps(line) + "\n")
    for epoch in range(1, config.epochs + 1):
        if on_epoch is not None:
            on_epoch(epoch, acc, 1.0 / epoch, 0.001)
    return TrainResult(
        val_acc_per_epoch=(acc,) * config.epochs,
        train_loss_per_epoch=tuple(1.0 / e for e in range(1, config.epochs + 1)),
        val_acc=acc,
        test_acc=acc - 0.01,
        train_s=0.001,
        latency_ms=0.01,
        latency_batch=config.latency_batch,
        peak_mem_bytes=0,
        device="cpu",
        epochs_done=config.epochs,
        images_per_s=1.0,
        precision="fp32",
        weights=f"{arch.hash()}/{config.seed}".encode() if keep_weights else None,
    )


def trainings(calls: Path) -> list[dict[str, Any]]:
    """What :func:`fake_train` was asked to train, call by call."""
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def _drawn(config: JobConfig, n: int) -> list[ArchSpec]:
    """The first ``n`` architectures a new job with ``config`` draws, replayed in memory: its
    sampler is seeded from the job's seed and the study's (empty) history alone."""
    job_study = open_study(storage=optuna.storages.InMemoryStorage(), name="replay", config=config)
    return [config.space.sample(job_study.study.ask()) for _ in range(n)]


def _flaky(
    arch: ArchSpec,
    dataset: Any,
    config: TrainConfig,
    *,
    raises: ArchSpec,
    nan: ArchSpec,
    **kw: Any,
) -> TrainResult:
    # every search trial has one seed (replicate 0): the architecture says which trial it is
    if arch == raises:
        raise RuntimeError("injected failure")
    result = train(arch, dataset, config, **kw)
    return replace(result, val_acc=math.nan) if arch == nan else result


def _optuna_numbers(url: str, trial_ids: list[int]) -> list[int]:
    """The numbers of Optuna's trials with these storage ids, read from Optuna's own table."""
    with sa.create_engine(url).connect() as conn:
        by_id = dict(conn.execute(sa.text("select trial_id, number from trials")).all())
    return [by_id[i] for i in trial_ids]


def _curves(url: str) -> dict[int, list[float]]:
    """Each candidate's recorded validation accuracies, epoch by epoch."""
    with sa.create_engine(url).connect() as conn:
        found = conn.execute(
            sa.text("select candidate_id, val_acc from ps_epochs order by candidate_id, epoch")
        ).all()
    curves: dict[int, list[float]] = {}
    for candidate_id, val_acc in found:
        curves.setdefault(candidate_id, []).append(val_acc)
    return curves


def test_failing_and_nan_trials_are_fail_and_the_budget_is_still_met(
    ray_instance, tmp_path, monkeypatch
):
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    progress: list[tuple[str, int, int | None, int]] = []
    # the worker's handler must survive Tune's run (Tune installs its own unless told not to)
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    handlers: list[Any] = []

    def ours(signum: int, frame: Any) -> None:
        raise AssertionError("no SIGINT is sent")

    def on_progress(phase: str, done: int, total: int | None, failed: int) -> None:
        progress.append((phase, done, total, failed))
        handlers.append(signal.getsignal(signal.SIGINT))

    config = small_config(trials=4, keep_weights="all")
    # trials 1 and 2 go wrong in two ways
    _, raises, nan = _drawn(config, 3)
    previous = signal.signal(signal.SIGINT, ours)
    try:
        store, job, outcome, study = submit_and_run(
            url,
            config,
            train_fn=functools.partial(_flaky, raises=raises, nan=nan),
            on_progress=on_progress,
            weights_dir=tmp_path / "weights",
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert handlers == [ours] * 6
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    assert outcome.status == "succeeded" and outcome.completed == 4
    # the job records its data's facts, which export and the dashboard read
    facts = store.get_job(job.id).dataset_facts
    assert facts == load_dataset("digits", seed=3).facts()
    assert (facts.num_classes, facts.input_shape, len(facts.mean)) == (10, (1, 8, 8), 1)
    states = {t.number: t.state for t in study.trials}
    assert sum(s == TrialState.COMPLETE for s in states.values()) == 4
    assert states[1] == TrialState.FAIL and states[2] == TrialState.FAIL
    rows = store.list_candidates(job.id)
    by_number = {r.trial_number: r for r in rows}
    assert study.trials[1].user_attrs["error"] == "RuntimeError: injected failure"
    # the objectives' values in order: the NaN accuracy, then the FLOPs
    assert study.trials[2].user_attrs["error"] == (
        f"non-finite objective values [nan, {float(by_number[2].flops)}]"
    )
    assert len(study.trials) == 6
    assert progress[-1] == ("search", 4, 4, 2)
    # weights of the complete trials only; the NaN trial's were filed, then dropped
    complete_numbers = sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE)
    assert sorted(p.name for p in Path(tmp_path / "weights").iterdir()) == sorted(
        f"trial-{n}.pt" for n in complete_numbers
    )

    assert sorted(by_number) == [t.number for t in study.trials]
    assert (by_number[1].state, by_number[1].error) == ("failed", "RuntimeError: injected failure")
    complete = [r for r in rows if r.state == "complete"]
    assert len(complete) == 4
    for row in complete:
        trial = study.trials[row.trial_number]
        assert trial.values == [row.val_acc, row.flops]
        assert row.params > 0 and row.test_acc is not None and row.epochs_done == 1
    # every row joins its own Optuna trial
    assert _optuna_numbers(url, [r.optuna_trial_id for r in rows]) == [r.trial_number for r in rows]


def test_cancel_prunes_running_trials_and_keeps_partial_metrics(ray_instance, tmp_path):
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    stop = StopRequest()

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
    store, job, outcome, study = submit_and_run(
        url, small_config(trials=3, epochs=2), train_fn=slow, stop=stop
    )
    assert outcome.status == "cancelled"
    assert time.monotonic() - t0 < 60
    # two trials in flight (the concurrency), neither could finish: both pruned, no third asked
    assert [(t.state, t.values) for t in study.trials] == [(TrialState.PRUNED, None)] * 2
    rows = {r.trial_number: r for r in store.list_candidates(job.id)}
    assert sorted(rows) == [0, 1]
    curves = _curves(url)
    for trial in study.trials:
        row = rows[trial.number]
        assert (row.state, row.error) == ("pruned", "job cancelled")
        assert row.epochs_done == trial.user_attrs["epochs_done"] == len(curves.get(row.id, []))
        assert row.val_acc == trial.user_attrs.get("val_acc")
        assert row.val_acc == (curves[row.id][-1] if row.id in curves else None)
    # the trial that triggered the cancel had finished its first epoch: its accuracy is kept
    assert max(r.epochs_done for r in rows.values()) == 1


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
    store, job, outcome, study = submit_and_run(
        pg_url, small_config(trials=4), train_fn=functools.partial(_cut_connections, url=pg_url)
    )
    assert outcome.status == "succeeded"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    rows = store.list_candidates(job.id)
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
    store, job, outcome, study = submit_and_run(
        pg_url, small_config(trials=3, concurrency=1), storage=storage
    )
    assert cut.state == "done"
    assert outcome.status == "succeeded"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    rows = store.list_candidates(job.id)
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
    job = store.submit(small_config(trials=2))
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
    store, job, outcome, study = submit_and_run(url, small_config(trials=2))
    assert outcome.status == "succeeded"
    first = store.list_candidates(job.id)[0]
    # a worker that died between telling Optuna and writing its own row
    with store.session(write=True) as s:
        s.execute(
            sa.text("update ps_candidates set state = 'running', val_acc = null where id = :id"),
            {"id": first.id},
        )
    job_study = open_study(storage=optuna_storage(url), name=job.study_name, config=job.config)
    assert job_study.recover(store, job.id) == 0
    again = {r.id: r for r in store.list_candidates(job.id)}[first.id]
    assert again.state == "complete"
    assert again.val_acc == study.trials[first.trial_number].values[0]


def test_a_trial_optuna_still_runs_is_left_open_until_optuna_ends_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # no Ray: the recorder's callbacks are called as Tune would, should Tune call them before
    # the searcher has told Optuna
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    config = small_config(trials=1, keep_weights="all")
    store = Store.open(url, create=True)
    job = store.submit(config)
    job_study = open_study(storage=optuna_storage(url), name=job.study_name, config=config)
    asked = job_study.study.ask()
    arch = next(iter(config.space))
    weights = tmp_path / "weights"
    recorder = Recorder(
        study=job_study,
        store=store,
        job_id=job.id,
        attempt=1,
        worker_id="w-test",
        epochs_total=1,
        num_classes=10,
        input_shape=(1, 8, 8),
        weights_dir=weights,
        keep_weights="all",
    )
    trial = Trial(
        "fake",
        config={
            "arch": arch.to_dict(),
            "trial_number": asked.number,
            "seed": 5,
            "phase": "search",
            "replicate": 0,
            "reference": None,
            "cache_key": "k",
            "gpu_share": 0.0,
        },
        trial_id="t0",
        stub=True,
    )
    recorder.on_trial_start(0, [trial], trial)
    recorder.on_trial_result(0, [trial], trial, {"weights": b"kept"})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        recorder.on_trial_complete(0, [trial], trial)
    assert caplog.record_tuples == [
        (
            "workers.recorder",
            logging.WARNING,
            "trial 0 ended in Tune while Optuna still holds it RUNNING; its candidate row is "
            "left open",
        )
    ]
    [row] = store.list_candidates(job.id)
    assert row.state == "running"
    assert (weights / "trial-0.pt").read_bytes() == b"kept"

    # once Optuna holds the trial's end, close_open ends the row from it
    asked.set_user_attr("val_acc", 0.75)
    job_study.study.tell(asked, [0.75, 1000.0])
    recorder.on_experiment_end([trial])
    recorder.close_open()
    [row] = store.list_candidates(job.id)
    assert (row.state, row.val_acc) == ("complete", 0.75)
    assert (weights / "trial-0.pt").read_bytes() == b"kept"


def test_a_resumed_job_whose_budget_is_met_keeps_only_the_fronts_weights(
    ray_instance, tmp_path, monkeypatch
):
    weights = tmp_path / "weights"
    # the first attempt trains everything, then its worker dies before it prunes the weights
    with monkeypatch.context() as patch:
        patch.setattr(Recorder, "prune_weights", lambda self: None)
        store, job, first, study = submit_and_run(
            f"sqlite:///{tmp_path / 'ps.db'}", small_config(trials=4), weights_dir=weights
        )
    assert first.status == "succeeded"
    assert len(list(weights.glob("trial-*.pt"))) == 4
    front = {t.number for t in study.best_trials}
    assert len(front) < 4  # else nothing would be pruned and the test would prove nothing
    extra = study.ask()  # a fifth trial the dead worker had begun

    again = run_job(
        store=store,
        job_id=job.id,
        config=job.config,
        study_name=job.study_name,
        attempt=2,
        worker_id="w-test",
        storage=optuna_storage(f"sqlite:///{tmp_path / 'ps.db'}"),
        dataset=load_dataset("digits", seed=job.config.seed),
        weights_dir=weights,
    )
    assert (again.status, again.completed) == ("succeeded", 4)
    assert {p.name for p in weights.glob("trial-*.pt")} == {f"trial-{n}.pt" for n in front}
    after = optuna.load_study(
        study_name=job.study_name, storage=optuna_storage(f"sqlite:///{tmp_path / 'ps.db'}")
    ).trials
    # the begun trial is failed, and not queued again: the budget needs it no more
    assert [t.state for t in after[4:]] == [TrialState.FAIL]
    assert after[extra.number].state == TrialState.FAIL


def test_auto_trains_on_the_cpu_of_a_cluster_without_gpus_whatever_gpu_memory_says(
    ray_instance: None,
) -> None:
    # a share of a GPU that no node has would leave every trial pending for ever
    config = JobConfig.from_mapping(
        {"trials": 1, "epochs": 1, "gpus_per_trial": "auto", "gpu_memory": 80}
    )
    assert device_memory(config) is None
