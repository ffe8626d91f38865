"""``poolstride workers``: each worker's status and job as the queue knows them, lost included."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from _cli import refusal, run

from search.config import JobConfig
from search.store import Store, display_url, downgrade, normalize_url

HEADER = ["ID", "HOST", "PID", "STATUS", "JOB", "LAST", "HEARTBEAT", "AGO"]


@pytest.fixture
def fleet(db_url: str) -> dict[str, int | None]:
    """Four workers, most recently heard from first: worker id -> the job its row names.

    ``lost`` claimed a job and then went silent for longer than its lease; ``busy`` holds a
    job; ``idle`` holds none; ``stopped`` exited cleanly.
    """
    config = JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1})
    with Store.open(db_url) as store:
        abandoned, held = store.submit(config).id, store.submit(config).id
        store.register_worker("lost", lease_seconds=0.1)
        assert store.claim("lost", lease_seconds=60, job_id=abandoned) is not None
        time.sleep(0.3)
        store.register_worker("busy")
        assert store.claim("busy", lease_seconds=60, job_id=held) is not None
        store.register_worker("idle")
        store.register_worker("stopped")
        store.worker_stopped("stopped")
    return {"stopped": None, "idle": None, "busy": held, "lost": abandoned}


def _table(stdout: str) -> list[list[str]]:
    header, *rows = (line.split() for line in stdout.splitlines())
    assert header == HEADER
    return rows


def test_json_lists_every_worker_with_its_derived_status(
    db_url: str, fleet: dict[str, int | None]
) -> None:
    result = run("workers", "--db", db_url, "--json")
    assert result.code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [(r["id"], r["status"], r["current_job_id"]) for r in records] == [
        ("stopped", "stopped", None),
        ("idle", "idle", None),
        ("busy", "busy", fleet["busy"]),
        ("lost", "lost", fleet["lost"]),
    ]
    assert [r["lease_seconds"] for r in records] == [60.0, 60.0, 60.0, 0.1]
    assert set(records[0]) == {
        "id",
        "hostname",
        "pid",
        "status",
        "current_job_id",
        "started_at",
        "last_heartbeat",
        "lease_seconds",
    }


def test_the_table_shows_status_job_and_heartbeat_and_hides_stopped(
    db_url: str, fleet: dict[str, int | None]
) -> None:
    heard = {r["id"]: r for r in json.loads(run("workers", "--db", db_url, "--json").stdout)}
    result = run("workers", "--db", db_url)
    assert result.code == 0, result.stderr
    rows = _table(result.stdout)
    assert [(r[0], r[3], r[4]) for r in rows] == [
        ("idle", "idle", "-"),
        ("busy", "busy", str(fleet["busy"])),
        ("lost", "lost", str(fleet["lost"])),
    ]
    for worker_id, host, pid, _, _, last, ago in rows:
        record = heard[worker_id]
        assert (host, pid) == (record["hostname"], str(record["pid"]))
        stamp = datetime.fromisoformat(record["last_heartbeat"])
        assert last == stamp.isoformat(timespec="seconds")
        assert 0 <= int(ago) < 30
    assert result.stderr == "1 stopped worker not shown (--all lists them)\n"


def test_all_shows_the_stopped_worker(db_url: str, fleet: dict[str, int | None]) -> None:
    result = run("workers", "--all", "--db", db_url)
    assert result.code == 0, result.stderr
    assert [(r[0], r[3], r[4]) for r in _table(result.stdout)] == [
        ("stopped", "stopped", "-"),
        ("idle", "idle", "-"),
        ("busy", "busy", str(fleet["busy"])),
        ("lost", "lost", str(fleet["lost"])),
    ]
    assert result.stderr == ""


def test_no_workers_is_one_line(db_url: str) -> None:
    result = run("workers", "--db", db_url)
    assert (result.code, result.stdout, result.stderr) == (0, "no workers\n", "")
    assert json.loads(run("workers", "--db", db_url, "--json").stdout) == []


def test_only_stopped_workers_says_none_and_how_many_are_hidden(db_url: str) -> None:
    with Store.open(db_url) as store:
        for worker_id in ("a", "b"):
            store.worker_stopped(store.register_worker(worker_id))
    result = run("workers", "--db", db_url)
    assert (result.code, result.stdout) == (0, "no workers\n")
    assert result.stderr == "2 stopped workers not shown (--all lists them)\n"


def test_a_missing_or_old_database_is_refused_and_left_alone(db_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert refusal(run("workers", "--db", f"sqlite:///{missing}")) == (
        f"database sqlite:///{missing} does not exist: run `poolstride db upgrade`"
    )
    assert not missing.exists()
    downgrade(db_url, "base")
    assert refusal(run("workers", "--db", db_url)) == (
        f"database {display_url(normalize_url(db_url))} has no poolstride schema: "
        "run `poolstride db upgrade`"
    )
