"""The dashboard's tables: formats, the queue's job and worker tables, the Trials columns."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from dashboard.tables import (
    fmt_int,
    fmt_time,
    fmt_value,
    job_errors,
    jobs_table,
    lost_warning,
    phase_now,
    trials_columns,
    workers_table,
)
from search.config import JobConfig
from search.query import stage_columns
from search.space import SpaceConfig
from search.store import JobInfo, PhaseProgress, Store, WorkerInfo, upgrade
from search.vocabulary import WorkerStatus

# what load_candidates returns for a job of two stages, in its order
COLUMNS = [
    "candidate_id",
    "trial",
    "state",
    *stage_columns(2),
    "val_acc",
    "test_acc",
    "flops",
    "params",
    "latency_ms",
    "train_s",
    "activation_bytes",
    "receptive_field",
    "arch_hash",
    "epochs_done",
]
FIXED_WIDTHS = SpaceConfig.from_mapping({"stages": 2, "widths": [8, 16], "input": "1x8x8"})
T0 = datetime(2026, 3, 4, 5, 6, 7)


@pytest.fixture
def jobs(tmp_path: Path) -> list[JobInfo]:
    """Two jobs as the queue lists them (oldest first): one failed, one that ran fine."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    config = JobConfig.from_mapping({"dataset": "digits", "trials": 4, "epochs": 1})
    with Store.open(url) as store:
        failed, ok = store.submit(replace(config, name="bad")), store.submit(config)
    return [
        replace(
            failed,
            status="failed",
            error="RuntimeError: CUDA out of memory. " + "x" * 300,
            created_at=T0,
            started_at=T0 + timedelta(minutes=1),
            finished_at=T0 + timedelta(hours=25),
        ),
        replace(ok, status="succeeded", trials_done=4, created_at=T0, worker_id="w-1"),
    ]


def test_formats() -> None:
    assert [fmt_int(v) for v in (0, 1234567, np.int64(4834), None, float("nan"))] == [
        "0",
        "1,234,567",
        "4,834",
        "-",
        "-",
    ]
    assert fmt_time(T0) == "03-04 05:06"
    assert [fmt_value(v) for v in (np.int64(98304), np.float64(0.361111), "max", True)] == [
        "98,304",
        "0.3611",
        "max",
        "True",
    ]


def test_the_job_table_has_short_times_and_no_error_column(jobs: list[JobInfo]) -> None:
    table = jobs_table(jobs)
    assert table.columns.tolist() == [
        "job",
        "name",
        "status",
        "priority",
        "progress",
        "trials",
        "phase",
        "phases",
        "attempts",
        "worker",
        "created",
        "started",
        "finished",
    ]
    newest, oldest = table.to_dict("records")
    assert (newest["name"], newest["progress"], newest["trials"]) == ("digits", 1.0, "4/4")
    assert (newest["worker"], newest["started"], newest["finished"]) == ("w-1", "-", "-")
    assert [oldest[k] for k in ("created", "started", "finished")] == [
        "03-04 05:06",
        "03-04 05:07",
        "03-05 06:06",
    ]


def test_a_job_is_in_its_first_phase_whose_trials_have_not_all_ended(
    jobs: list[JobInfo],
) -> None:
    job = jobs[1]
    search, confirm = PhaseProgress("search", 4, 4, 2), PhaseProgress("confirm", 3, 6, 1)
    ablate = PhaseProgress("ablate", 0, None, 0)
    # failed search trials are replaced: the search ends at its budget of results
    assert phase_now(replace(job, phases=(search, confirm, ablate))) == confirm
    # a planned phase ends when each of its trials completed or failed
    ended = replace(confirm, done=5)
    assert phase_now(replace(job, phases=(search, ended, ablate))) == ablate  # not yet planned
    assert phase_now(replace(job, phases=(search, ended))) == ended  # the last, once all ended
    assert phase_now(replace(job, phases=())) is None
    row = jobs_table([replace(job, phases=(search, confirm, ablate))]).iloc[0]
    assert row["phase"] == "confirm"
    assert row["phases"] == "search 4/4 (2 failed) · confirm 3/6 (1 failed) · ablate 0/?"


def test_errors_are_listed_whole_below_the_table(jobs: list[JobInfo]) -> None:
    failed = jobs[0]
    assert job_errors(jobs) == [(f"Job {failed.id} (bad, failed)", failed.error)]
    assert job_errors(jobs[1:]) == []


def test_the_worker_table_counts_seconds_from_now() -> None:
    heard = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    worker = WorkerInfo("w-1", "box", 7, "busy", 2, heard - timedelta(days=1), heard)
    table = workers_table([worker], heard + timedelta(seconds=42.4))
    assert table.to_dict("records") == [
        {
            "worker": "w-1",
            "host": "box",
            "pid": 7,
            "status": "busy",
            "job": 2,
            "last heartbeat": "03-04 05:06",
            "seconds ago": 42,
            "started": "03-03 05:06",
        }
    ]


def test_lost_workers_are_counted_in_a_warning() -> None:
    heard = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    statuses: tuple[WorkerStatus, ...] = ("lost", "busy", "idle", "stopped", "lost")
    fleet = [
        WorkerInfo(f"w-{i}", "box", i, status, None, heard, heard)
        for i, status in enumerate(statuses)
    ]
    assert lost_warning(fleet) == "2 workers lost: no heartbeat within their lease"
    assert lost_warning(fleet[:4]) == "1 worker lost: no heartbeat within its lease"
    assert lost_warning(fleet[1:4]) is None
    assert lost_warning([]) is None


def test_trial_columns_drop_what_the_space_fixes() -> None:
    # widths and depths are fixed: four columns that say the same on every row
    assert trials_columns(COLUMNS, FIXED_WIDTHS) == [
        "trial",
        "val_acc",
        "test_acc",
        "flops",
        "params",
        "state",
        "s1.downsample",
        "s1.kernel",
        "s1.skip",
        "s2.downsample",
        "s2.kernel",
        "s2.skip",
        "latency_ms",
        "train_s",
        "activation_bytes",
        "receptive_field",
        "arch_hash",
        "epochs_done",
    ]


def test_trial_columns_put_what_is_filtered_and_sorted_first() -> None:
    columns = trials_columns(
        COLUMNS, FIXED_WIDTHS, ["s2.kernel>=5", "s2.width=16", "state=complete"], "-train_s"
    )
    # a fixed column filtered on is kept; a key named twice appears once
    assert columns[:9] == [
        "trial",
        "s2.kernel",
        "s2.width",
        "state",
        "train_s",
        "val_acc",
        "test_acc",
        "flops",
        "params",
    ]
    assert "s1.width" not in columns and columns.count("state") == 1
    assert sorted(columns) == sorted(
        set(COLUMNS) - {"candidate_id", "s1.width", "s1.depth", "s2.depth"}
    )


def test_trial_columns_keep_a_searched_width() -> None:
    searched = SpaceConfig.from_mapping(
        {"stages": 2, "widths": [[8, 16], 16], "depth": [1, 2], "input": "1x8x8"}
    )
    columns = trials_columns(COLUMNS, searched)
    assert {"s1.width", "s1.depth", "s2.depth"} <= set(columns)
    assert "s2.width" not in columns


def test_trial_columns_refuse_a_malformed_filter() -> None:
    with pytest.raises(ValueError) as refused:
        trials_columns(COLUMNS, FIXED_WIDTHS, ["s1.kernel=4x"])
    assert str(refused.value) == "--where 's1.kernel=4x': s1.kernel needs a number, got '4x'"
