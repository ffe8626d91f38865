"""Make ``tests/store/data/upgrade_0001.db``: a database at poolstride's schema 0001, with rows.

``tests/store/test_upgrade_fixture.py`` copies it and upgrades the copy to the head revision,
as an existing user's database is upgraded, then checks that every row survived. The schema is
made by ``upgrade(url, "0001")`` and the rows are written with plain SQL for schema 0001 (not
through the Store, whose code follows the head), with fixed values, so this script makes the
same poolstride rows however the schema moves on. The job's Optuna study (three trials) is
written through Optuna's API, in the tables of the Optuna release installed when the file was
made.

Usage, from the repository root::

    .venv/bin/python scripts/make_upgrade_fixture.py            # rewrite the checked-in file
    .venv/bin/python scripts/make_upgrade_fixture.py --out x.db
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from search.store import optuna_storage, upgrade

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "store" / "data" / "upgrade_0001.db"

# JobConfig.to_dict() as poolstride wrote it at schema 0001.
CONFIG = (
    '{"augment": false, "batch_size": 128, "concurrency": 2, "cpus_per_trial": 1.0, '
    '"data_dir": null, "dataset": "digits", "epochs": 2, "gpus_per_trial": 0.0, '
    '"keep_weights": "front", "label_smoothing": 0.1, "lr": 0.05, "max_attempts": 3, '
    '"name": "fixture", "objectives": ["val_acc", "flops"], "priority": 0, "sampler": "nsga2", '
    '"seed": 0, "space": {"depth": [1], "downsample": ["max", "avg", "strided", "conv"], '
    '"input": "1x8x8", "kernel": [3, 5, 7], "skip": ["none", "proj", "pool"], "stages": 2, '
    '"widths": [8, 16]}, "trials": 3}'
)
QUEUED_CONFIG = CONFIG.replace('"fixture"', '"waiting"').replace('"priority": 0', '"priority": 5')
WORKER = "host-1-abcdef"
T0 = "2026-11-26 12:00:00.000000"  # naive UTC, the text SQLAlchemy writes for SQLite

JOBS = [
    # id, name, status, priority, config, study, total, attempts, worker, started, finished
    (1, "fixture", "succeeded", 0, CONFIG, "poolstride-job-1", 3, 1, WORKER, T0, T0),
    (2, "waiting", "queued", 5, QUEUED_CONFIG, "poolstride-job-2", 3, 0, None, None, None),
]
# trial, state, arch_json, arch_hash, val_acc, test_acc, flops, params, act_bytes, rf, error
CANDIDATES = [
    (
        0,
        "complete",
        '{"stages":[{"depth":1,"downsample":"max","kernel":3,"skip":"none","width":8},'
        '{"depth":1,"downsample":"strided","kernel":5,"skip":"proj","width":16}]}',
        "18675049726adfbf",
        0.81,
        0.8,
        109888,
        4242,
        14440,
        14,
        None,
    ),
    (
        1,
        "complete",
        '{"stages":[{"depth":1,"downsample":"avg","kernel":3,"skip":"pool","width":8},'
        '{"depth":1,"downsample":"conv","kernel":7,"skip":"none","width":16}]}',
        "af95a22c7eb5e114",
        0.875,
        0.86,
        384320,
        19730,
        17768,
        30,
        None,
    ),
    (
        2,
        "failed",
        '{"stages":[{"depth":1,"downsample":"max","kernel":7,"skip":"none","width":8},'
        '{"depth":1,"downsample":"max","kernel":3,"skip":"proj","width":16}]}',
        "417812fbe6e42ad1",
        None,
        None,
        448832,
        4754,
        17000,
        16,
        "RuntimeError: boom",
    ),
]
STAGES = {  # trial -> (downsample, kernel, skip, width) per stage
    0: [("max", 3, "none", 8), ("strided", 5, "proj", 16)],
    1: [("avg", 3, "pool", 8), ("conv", 7, "none", 16)],
    2: [("max", 7, "none", 8), ("max", 3, "proj", 16)],
}
EPOCHS = {  # trial -> (val_acc, train_loss, seconds) per epoch
    0: [(0.7, 1.2, 0.5), (0.81, 0.9, 0.5)],
    1: [(0.75, 1.1, 0.75), (0.875, 0.8, 0.75)],
    2: [(0.25, 2.0, 0.5)],
}


def make(out: Path) -> None:
    """Write the fixture database to ``out`` (replacing any file there)."""
    for stale in (out, out.with_name(out.name + "-wal"), out.with_name(out.name + "-shm")):
        stale.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{out}"
    assert upgrade(url, "0001") == "0001"
    trial_ids = _optuna_trials(url)

    conn = sqlite3.connect(out)
    with conn:
        conn.executemany(
            "INSERT INTO ps_jobs (id, name, status, priority, config, study_name, trials_total,"
            " attempts, max_attempts, error, cancel_requested, worker_id, lease_expires_at,"
            " created_at, started_at, finished_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 3, NULL, 0, ?, NULL, ?, ?, ?, ?)",
            [(*job[:9], T0, job[9], job[10], T0) for job in JOBS],
        )
        conn.execute(
            "INSERT INTO ps_workers (id, hostname, pid, status, current_job_id, started_at,"
            " last_heartbeat) VALUES (?, 'host', 1, 'stopped', NULL, ?, ?)",
            (WORKER, T0, T0),
        )
        for (trial, *row), trial_id in zip(CANDIDATES, trial_ids, strict=True):
            state, arch_json, arch_hash, val, test, flops, params, act, rf, error = row
            candidate_id = conn.execute(
                "INSERT INTO ps_candidates (job_id, trial_number, optuna_trial_id, state,"
                " arch_json, arch_hash, val_acc, test_acc, flops, params, activation_bytes,"
                " receptive_field, latency_ms, train_s, epochs_done, epochs_total, device, seed,"
                " attempt, worker_id, error, started_at, finished_at)"
                " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2, 'cpu', ?, 1, ?, ?, ?, ?)",
                (
                    trial,
                    trial_id,
                    state,
                    arch_json,
                    arch_hash,
                    val,
                    test,
                    flops,
                    params,
                    act,
                    rf,
                    None if val is None else 0.25,
                    None if val is None else 1.5,
                    len(EPOCHS[trial]),
                    trial,
                    WORKER,
                    error,
                    T0,
                    T0,
                ),
            ).lastrowid
            conn.executemany(
                "INSERT INTO ps_stages (candidate_id, stage, downsample, kernel, skip, width,"
                " depth) VALUES (?, ?, ?, ?, ?, ?, 1)",
                [(candidate_id, i, *st) for i, st in enumerate(STAGES[trial], 1)],
            )
            conn.executemany(
                "INSERT INTO ps_epochs (candidate_id, epoch, val_acc, train_loss, seconds)"
                " VALUES (?, ?, ?, ?, ?)",
                [(candidate_id, i, *ep) for i, ep in enumerate(EPOCHS[trial], 1)],
            )
    # one self-contained file: everything out of the WAL, no -wal/-shm beside it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("VACUUM")
    conn.close()


def _optuna_trials(url: str) -> list[int]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna_storage(url)
    study = optuna.create_study(
        study_name="poolstride-job-1", storage=storage, directions=["maximize", "minimize"]
    )
    choices = {"downsample": ["max", "avg", "strided", "conv"], "kernel": [3, 5, 7]}
    dists = {f"s{i}.{k}": CategoricalDistribution(v) for i in (1, 2) for k, v in choices.items()}
    for trial, state, _json, _hash, val, _test, flops, *_ in CANDIDATES:
        params = {
            f"s{i}.{key}": value
            for i, st in enumerate(STAGES[trial], 1)
            for key, value in zip(("downsample", "kernel"), st[:2], strict=True)
        }
        study.add_trial(
            create_trial(
                params=params,
                distributions=dists,
                values=None if val is None else [val, flops],
                state=TrialState.COMPLETE if state == "complete" else TrialState.FAIL,
                user_attrs={"error": "RuntimeError: boom"} if val is None else {},
            )
        )
    study_id = storage.get_study_id_from_name(study.study_name)
    ids = [
        storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        for t in study.get_trials(deepcopy=False)
    ]
    storage.engine.dispose()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the database file")
    args = parser.parse_args()
    make(args.out.resolve())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
