"""Worker processes end to end: `poolstride run`, kill -9 and resume, two workers on one queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from search.store import Store, optuna_storage

pytestmark = pytest.mark.slow

POOLSTRIDE = [sys.executable, "-m", "search.cli"]
TINY = [
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--widths",
    "8,16",
    "--stages",
    "2",
    "--batch-size",
    "64",
    # the search phase alone, as before there were others
    "--seeds",
    "1",
    "--ablate",
    "none",
]


def cli(*args: str, db: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POOLSTRIDE, *args, "--db", db], capture_output=True, text=True, timeout=timeout, **kw
    )


def _describe(pids: list[int]) -> list[str]:
    """Each process's command line and whether it carries the reaper's mark, for a failure."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        out.append(f"{pid} {cmd} (RAY_TMPDIR set: {b'RAY_TMPDIR=' in env})")
    return out


def _processes_marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (a worker and everything it started)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if mark.encode() in env and "State:\tZ" not in status:
            found.append(int(pid))
    return found


def _submit(db: str, *flags: str) -> dict:
    """``poolstride submit`` of a tiny job with ``flags``; the job's JSON."""
    proc = cli("submit", *TINY, *flags, "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _wait_for_an_epoch(db: str, worker: subprocess.Popen) -> None:
    """Until some trial has recorded an epoch: the worker is mid-job."""
    engine = sa.create_engine(db)
    deadline = time.monotonic() + 120
    while True:
        with engine.connect() as conn:
            if conn.execute(sa.text("select count(*) from ps_epochs")).scalar_one():
                return
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)


def test_run_end_to_end_on_digits(tmp_path):
    db = f"sqlite:///{tmp_path / 'ps.db'}"
    proc = cli("run", *TINY, "--trials", "6", "--json", db=db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["status"] == "succeeded" and out["trials_done"] == 6
    assert out["pareto"] and all(
        {"s1.downsample", "val_acc", "flops"} <= set(r) for r in out["pareto"]
    )

    listed = subprocess.run(
        [
            str(Path(sys.executable).with_name("optuna")),
            "trials",
            "--study-name",
            out["study"],
            "--storage",
            db,
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert [t["state"] for t in json.loads(listed.stdout)] == ["COMPLETE"] * 6

    rows = Store.open(db).list_candidates(out["id"])
    assert len(rows) == 6 and {r.state for r in rows} == {"complete"}
    for row in rows:
        assert row.flops > 0 and row.params > 0 and row.receptive_field > 0
        assert 0 <= row.val_acc <= 1 and 0 <= row.test_acc <= 1
        assert row.train_s > 0 and row.latency_ms > 0 and row.device == "cpu"


def test_kill_9_worker_is_resumed_by_the_next_without_losing_or_doubling(tmp_path):
    db = f"sqlite:///{tmp_path / 'ps.db'}"
    submitted = cli(
        "submit",
        *TINY,
        "--trials",
        "6",
        "--epochs",
        "2",
        "--sampler",
        "random",
        "--concurrency",
        "2",
        "--json",
        db=db,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    engine = sa.create_engine(db)

    def count(state: str) -> int:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("select count(*) from ps_candidates where state = :s"), {"s": state}
            ).scalar_one()

    mark = f"PS_TEST_WORKER={tmp_path.name}"
    env = {**os.environ, "PS_TEST_WORKER": tmp_path.name}
    first = subprocess.Popen(
        [*POOLSTRIDE, "worker", "--once", "--lease-s", "4", "--db", db],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not (count("complete") >= 1 and count("running") >= 1):
        assert first.poll() is None, "the first worker ended before it could be killed"
        assert time.monotonic() < deadline, "no trial completed in time"
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    storage = optuna_storage(db)
    before = optuna.load_study(study_name=job["study"], storage=storage).trials
    running_then = {t.number: t.params for t in before if t.state == TrialState.RUNNING}
    assert running_then

    # the dead worker's Ray processes go away by themselves (the reaper sweeps for up to 30 s);
    # nothing else is touched
    deadline = time.monotonic() + 45
    while _processes_marked(mark):
        assert time.monotonic() < deadline, f"left behind: {_describe(_processes_marked(mark))}"
        time.sleep(0.5)

    second = cli("worker", "--once", "--lease-s", "4", db=db, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]

    status = json.loads(cli("status", str(job["id"]), "--json", db=db).stdout)
    assert status["status"] == "succeeded" and status["attempts"] == 2
    study = optuna.load_study(study_name=job["study"], storage=storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6 and status["trials_done"] == 6
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for number, params in running_then.items():
        assert study.trials[number].state == TrialState.FAIL
        retry = [t for t in study.trials if t.user_attrs.get("retry_of") == number]
        # the same architecture: every param its original had drawn (one killed while it
        # drew them draws the rest)
        assert len(retry) == 1 and params.items() <= retry[0].params.items()
        assert retry[0].user_attrs["phase"] == "search"

    # the second attempt's own draws are new, not the first attempt's sequence again
    first_draws = [t.params for t in before]
    fresh = [t.params for t in study.trials[len(before) :] if "retry_of" not in t.user_attrs]
    assert fresh and fresh != first_draws[: len(fresh)]

    rows = Store.open(db).list_candidates(job["id"])
    numbers = {t.number for t in study.trials}
    assert {r.trial_number for r in rows} <= numbers
    # a trial asked for just before the kill may have no row; it never trained, and failed
    for number in numbers - {r.trial_number for r in rows}:
        assert study.trials[number].state == TrialState.FAIL
    assert "running" not in {r.state for r in rows}
    assert sum(r.state == "complete" for r in rows) == 6
    assert {r.trial_number for r in rows if r.state == "complete"} == {t.number for t in complete}


def test_two_workers_on_postgres_run_each_of_four_jobs_once(pg_url, tmp_path):
    ids = []
    for i in range(4):
        proc = cli("submit", *TINY, "--trials", "2", "--name", f"job{i}", "--json", db=pg_url)
        assert proc.returncode == 0, proc.stderr
        ids.append(json.loads(proc.stdout)["id"])
    workers = [
        subprocess.Popen(
            [*POOLSTRIDE, "worker", "--drain", "--db", pg_url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=400)
        assert w.returncode == 0, err[-3000:]

    store = Store.open(pg_url)
    for job_id in ids:
        job = store.get_job(job_id)
        assert job.status == "succeeded" and job.attempts == 1
        rows = store.list_candidates(job_id)
        assert sorted(r.trial_number for r in rows) == [0, 1]
        assert {r.state for r in rows} == {"complete"}
        assert len({r.worker_id for r in rows}) == 1, "one job, one worker"


# SIGINT too: Tune's own SIGINT handler would end the run instead of handing the job back
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_hands_the_job_back_and_the_next_worker_finishes_it(tmp_path, signum):
    db = f"sqlite:///{tmp_path / 'ps.db'}"
    job = _submit(db, "--trials", "2", "--epochs", "3", "--concurrency", "2")
    worker = subprocess.Popen(
        [*POOLSTRIDE, "worker", "--once", "--db", db],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TUNE_DISABLE_SIGINT_HANDLER"},
    )
    _wait_for_an_epoch(db, worker)
    worker.send_signal(signum)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-3000:]

    status = json.loads(cli("status", str(job["id"]), "--json", db=db).stdout)
    assert status["status"] == "queued" and status["attempts"] == 0
    study = optuna.load_study(study_name=job["study"], storage=optuna_storage(db))
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert interrupted
    waiting = {
        t.user_attrs["retry_of"]: t.system_attrs["fixed_params"]
        for t in study.trials
        if t.state == TrialState.WAITING
    }
    assert waiting == {t.number: t.params for t in interrupted}

    assert cli("worker", "--once", db=db).returncode == 0
    status = json.loads(cli("status", str(job["id"]), "--json", db=db).stdout)
    assert status["status"] == "succeeded" and status["trials_done"] == 2
    assert status["attempts"] == 1


def test_missing_data_fails_the_job_at_once_with_one_reason(tmp_path):
    db = f"sqlite:///{tmp_path / 'ps.db'}"
    missing = str(tmp_path / "nowhere.npz")
    submitted = cli(
        "submit",
        "--dataset",
        "npz",
        "--data-path",
        missing,
        "--input",
        "1x8x8",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--json",
        db=db,
    )
    assert (submitted.returncode, submitted.stderr) == (
        0,
        f"poolstride: warning: {missing!r} does not exist here; the worker that runs the job "
        "must have it\n",
    )
    job = json.loads(submitted.stdout)
    worker = cli("worker", "--once", db=db)
    assert worker.returncode == 0, worker.stderr
    assert "Traceback" not in worker.stderr
    status = json.loads(cli("status", str(job["id"]), "--json", db=db).stdout)
    # a missing file is not a crash: retrying it on another attempt would not help
    assert status["status"] == "failed" and status["attempts"] == 1
    resolved = str(Path(missing).resolve())
    assert status["error"] == f"dataset npz: npz data {resolved!r} does not exist"
    assert cli("worker", "--once", db=db).stderr.splitlines()[-1] == "no queued job"

    run = cli("run", "--dataset", "npz", "--data-path", missing, "--input", "1x8x8", db=db)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        f"poolstride: error: --data-dir {missing!r} does not exist"
    ]
    assert len(json.loads(cli("jobs", "--json", db=db).stdout)) == 1  # run queued nothing


def _study_left_open(db: str, study_name: str, job_id: int) -> tuple[list[int], list[int]]:
    """The numbers of the study's RUNNING trials and the job's ``running`` candidate rows."""
    study = optuna.load_study(study_name=study_name, storage=optuna_storage(db))
    rows = Store.open(db).list_candidates(job_id)
    return (
        [t.number for t in study.trials if t.state == TrialState.RUNNING],
        [r.trial_number for r in rows if r.state == "running"],
    )


def test_kill_9_with_no_attempt_left_fails_the_job_and_leaves_nothing_running(tmp_path):
    db = f"sqlite:///{tmp_path / 'ps.db'}"
    job = _submit(db, "--trials", "2", "--epochs", "2", "--concurrency", "2", "--max-attempts", "1")
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            [*POOLSTRIDE, "worker", "--once", "--lease-s", "3", "--db", db],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_for_an_epoch(db, first)
    (busy,) = Store.open(db).list_workers()
    assert (busy.pid, busy.status, busy.current_job_id) == (first.pid, "busy", job["id"])
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # written as it happened, not lost with the process's buffer
    assert f"job {job['id']} claimed (attempt 1/1)" in log.read_text()
    running, rows = _study_left_open(db, job["study"], job["id"])
    assert running and rows  # what the kill left

    time.sleep(3)  # the lease runs out
    (lost,) = Store.open(db).list_workers()
    assert (lost.pid, lost.status) == (first.pid, "lost")
    second = cli("worker", "--once", "--lease-s", "3", db=db)
    assert second.returncode == 0, second.stderr[-3000:]
    status = json.loads(cli("status", str(job["id"]), "--json", db=db).stdout)
    assert (status["status"], status["attempts"]) == ("failed", 1)
    assert "lost its lease" in status["error"]
    assert _study_left_open(db, job["study"], job["id"]) == ([], [])
    study = optuna.load_study(study_name=job["study"], storage=optuna_storage(db))
    for number in running:
        trial = study.trials[number]
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["error"] == status["error"]
    assert not [t for t in study.trials if t.state == TrialState.WAITING]  # nothing re-queued


def test_a_crashed_last_attempt_fails_its_open_trials_with_the_real_reason(tmp_path):
    db = f"sqlite:///{tmp_path / 'ps.db'}"
    job = _submit(db, "--trials", "2", "--epochs", "1", "--concurrency", "2", "--max-attempts", "1")
    # the artifact folder is a file: filing the first trial's weights crashes the attempt
    # while the other trial still trains
    blocked = tmp_path / "artifacts"
    blocked.write_text("not a folder")
    worker = cli(
        "worker",
        "--once",
        db=db,
        env={**os.environ, "POOLSTRIDE_ARTIFACTS": str(blocked)},
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    status = json.loads(cli("status", str(job["id"]), "--json", db=db).stdout)
    assert (status["status"], status["attempts"]) == ("failed", 1)
    assert "NotADirectoryError" in status["error"]
    assert _study_left_open(db, job["study"], job["id"]) == ([], [])
    study = optuna.load_study(study_name=job["study"], storage=optuna_storage(db))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("NotADirectoryError" in t.user_attrs["error"] for t in failed)
    assert all(t.user_attrs["error"] != "worker lost while the trial ran" for t in study.trials)
