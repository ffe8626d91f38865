"""The queue commands: output contracts, bad input, schema refusal and the database URL rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli import refusal, run

from search.cost import arch_cost
from search.space import ArchSpec
from search.store import (
    DB_ENV_VAR,
    Store,
    display_url,
    downgrade,
    head_revision,
    make_engine,
    normalize_url,
)
from search.vocabulary import CandidateState, Phase

SUBMIT = ("submit", "--dataset", "digits", "--trials", "3", "--epochs", "1", "--stages", "2")


def test_submit_jobs_status_cancel(db_url: str) -> None:
    first = run(*SUBMIT, "--name", "one", "--priority", "4", "--db", db_url, "--json")
    assert first.code == 0, first.stderr
    job = json.loads(first.stdout)
    assert (job["status"], job["priority"], job["name"]) == ("queued", 4, "one")
    assert job["study"] == f"poolstride-job-{job['id']}"
    assert job["config"]["space"]["input"] == "1x8x8"
    second = run(*SUBMIT, "--name", "two", "--db", db_url)
    assert second.stdout == (
        f"job {job['id'] + 1} 'two' queued: 3 trials of 1 epoch on digits "
        f"(study poolstride-job-{job['id'] + 1})\n"
    )

    listed = json.loads(run("jobs", "--db", db_url, "--json").stdout)
    assert [(j["name"], j["trials_done"], j["trials_total"]) for j in listed] == [
        ("one", 0, 3),
        ("two", 0, 3),
    ]
    table = run("jobs", "--db", db_url).stdout.splitlines()
    # the last column is the submission time
    assert [line.rsplit("  ", 1)[0].rstrip() for line in table] == [
        "ID  NAME  STATUS  PHASE   PRIORITY  TRIALS  ATTEMPTS",
        f"{job['id']}   one   queued  search  4         0/3     0/3",
        f"{job['id'] + 1}   two   queued  search  0         0/3     0/3",
    ]

    status = json.loads(run("status", str(job["id"]), "--db", db_url, "--json").stdout)
    assert {k: status[k] for k in ("id", "status", "trials_done", "attempts", "error")} == {
        "id": job["id"],
        "status": "queued",
        "trials_done": 0,
        "attempts": 0,
        "error": None,
    }
    text = run("status", str(job["id"]), "--db", db_url).stdout.splitlines()
    assert text[:6] == [
        f"job:         {job['id']} 'one'",
        "status:      queued",
        f"study:       poolstride-job-{job['id']}",
        "trials:      0/3 complete",
        "phases:      search 0/3, confirm 0/?, ablate 0/?",
        "results:     0 trained, 0 from the cache",
    ]

    assert run("cancel", str(job["id"]), "--db", db_url).stdout == f"job {job['id']} cancelled\n"
    cancelled = json.loads(run("jobs", "--status", "cancelled", "--db", db_url, "--json").stdout)
    assert [j["id"] for j in cancelled] == [job["id"]]
    with Store.open(db_url) as store:
        running = store.claim("w", 60)
    assert running is not None
    out = run("cancel", str(running.id), "--db", db_url)
    assert out.stdout == (
        f"job {running.id}: cancel requested; its worker stops it at the next heartbeat\n"
    )


def test_submit_reads_a_toml_config_and_flags_win(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "job.toml"
    config.write_text(
        'name = "from-file"\ndataset = "digits"\ntrials = 9\nepochs = 2\n'
        'objectives = ["val_acc", "params"]\n[space]\nstages = 2\nkernel = [3]\n'
    )
    out = run("submit", "--config", str(config), "--trials", "5", "--db", db_url, "--json")
    assert out.code == 0, out.stderr
    job = json.loads(out.stdout)
    assert (job["name"], job["trials_total"]) == ("from-file", 5)
    assert job["config"]["objectives"] == ["val_acc", "params"]
    assert job["config"]["space"]["kernel"] == [3]


def test_submit_plans_three_seeds_and_every_ablation_unless_told(
    db_url: str, tmp_path: Path
) -> None:
    def config(*args: str) -> dict[str, object]:
        out = run(*args, "--db", db_url, "--json")
        assert out.code == 0, out.stderr
        return dict(json.loads(out.stdout)["config"])

    keys = ("seeds", "ablate", "reference", "references", "cache", "val_fraction")
    default = config(*SUBMIT)
    assert [default[k] for k in keys] == [3, "all", "best", 1, True, 0.1]
    flags = ("--seeds", "5", "--ablate", "downsample", "--reference", "2", "--no-cache")
    given = config(*SUBMIT, *flags, "--val-fraction", "0.25")
    assert [given[k] for k in keys] == [5, "downsample", 2, 1, False, 0.25]
    assert config(*SUBMIT, "--references", "3")["references"] == 3
    # a file's keys win over submit's defaults, the flags over both
    toml = tmp_path / "job.toml"
    toml.write_text('seeds = 1\nablate = "none"\nreference = 7\ncache = false\n')
    from_file = config(*SUBMIT, "--config", str(toml), "--ablate", "all")
    assert [from_file[k] for k in keys] == [1, "all", 7, 1, False, 0.1]


def test_submit_warns_of_a_data_dir_missing_here_and_queues(db_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere"
    out = run(*SUBMIT, "--data-dir", str(missing), "--db", db_url)
    assert out.code == 0
    assert out.stderr == (
        f"poolstride: warning: {str(missing)!r} does not exist here; the worker that runs the "
        "job must have it\n"
    )
    assert json.loads(run("jobs", "--db", db_url, "--json").stdout)[0]["status"] == "queued"


BAD_SUBMITS = {
    "unknown dataset": (
        ("--dataset", "imagenet"),
        "unknown dataset 'imagenet' (expected one of mnist5k, digits, cifar10, imagefolder, "
        "npz, synthetic)",
    ),
    "unknown sampler": (
        ("--sampler", "cmaes"),
        "unknown sampler 'cmaes' (expected one of nsga2, tpe, random, grid)",
    ),
    "unknown objective": (
        ("--objectives", "val_acc,test_acc"),
        "unknown objective 'test_acc' (test_acc is reported, never optimised) (expected one of "
        "val_acc, flops, params, activation_bytes, latency_ms, latency_rel, train_s)",
    ),
    "space too deep": (
        ("--stages", "4"),
        "stage 4: its input is 1x1, which cannot be downsampled (input 1x8x8 allows at most 3 "
        "stages, got 4)",
    ),
    "bad kernel": (("--kernel", "4"), "stage 1: kernel 4 must be an odd integer >= 1"),
    "zero trials": (("--trials", "0"), "trials 0 must be at least 1"),
    "negative epochs": (("--epochs", "-1"), "epochs -1 must be at least 1"),
    "not a number": (
        ("--trials", "many"),
        "Invalid value for '--trials': 'many' is not a valid integer.",
    ),
    "contradicting input": (
        ("--input", "3x32x32"),
        "dataset digits has input 1x8x8; input 3x32x32 contradicts it",
    ),
    "zero seeds": (("--seeds", "0"), "seeds 0 must be at least 1"),
    "too many seeds": (("--seeds", "101"), "seeds 101 must be at most 100"),
    "unknown ablation": (
        ("--ablate", "kernel"),
        "Invalid value for '--ablate': 'kernel' is not one of 'none', 'downsample', 'all'.",
    ),
    "unknown reference": (
        ("--reference", "worst"),
        "reference 'worst' must be best or a trial number",
    ),
    "negative reference": (("--reference", "-1"), "reference -1 must be at least 0"),
    "zero references": (("--references", "0"), "references 0 must be at least 1"),
    "references around one trial": (
        ("--reference", "4", "--references", "2"),
        "references 2 needs reference best: one trial is one reference",
    ),
    "no validation share": (("--val-fraction", "0"), "val_fraction 0.0 must be positive"),
    "no training share": (("--val-fraction", "0.8"), "val_fraction 0.8 must be below 0.8"),
}


def _snapshot(url: str, counts: Callable[[str], dict[str, int]]) -> tuple[dict[str, int], str]:
    digest = ""
    if url.startswith("sqlite:///"):
        digest = hashlib.sha256(Path(url.removeprefix("sqlite:///")).read_bytes()).hexdigest()
    return counts(url), digest


@pytest.mark.parametrize("case", [*BAD_SUBMITS, "unknown job status", "unknown job cancel"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, db_url: str, row_counts: Callable[[str], dict[str, int]]
) -> None:
    run(*SUBMIT, "--db", db_url)
    before = _snapshot(db_url, row_counts)
    if case in BAD_SUBMITS:
        flags, message = BAD_SUBMITS[case]
        out = run(*SUBMIT, *flags, "--db", db_url, "--json")
    else:
        out, message = run(case.split()[-1], "999", "--db", db_url), "no job 999"
    assert refusal(out) == message
    assert _snapshot(db_url, row_counts) == before


def test_an_out_of_date_schema_is_refused_by_every_command(db_url: str) -> None:
    run(*SUBMIT, "--db", db_url)
    downgrade(db_url, "base")
    shown = display_url(normalize_url(db_url))
    for args in (SUBMIT, ("jobs",), ("status", "1"), ("cancel", "1")):
        assert refusal(run(*args, "--db", db_url)) == (
            f"database {shown} has no poolstride schema: run `poolstride db upgrade`"
        ), args
    head = head_revision()
    assert run("db", "current", "--db", db_url).stdout == (
        f"none (head is {head}: run `poolstride db upgrade`)\n"
    )
    assert run("db", "upgrade", "--db", db_url).stdout == (
        f"database {shown} is at revision {head} (head)\n"
    )
    current = json.loads(run("db", "current", "--db", db_url, "--json").stdout)
    assert current == {"current": head, "head": head, "up_to_date": True}
    assert run("db", "current", "--db", db_url).stdout == f"{head} (head)\n"
    assert run("jobs", "--db", db_url, "--json").stdout.strip() == "[]"
    assert run("jobs", "--db", db_url).stdout == "no jobs\n"
    assert (
        run("jobs", "--status", "failed", "--db", db_url).stdout == "no jobs with status failed\n"
    )


def test_database_url_from_flag_env_or_default(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    # No database yet: reading commands refuse and create no file, db current reports none.
    assert refusal(run("jobs", env={DB_ENV_VAR: None})) == (
        "database sqlite:///poolstride.db does not exist: run `poolstride db upgrade`"
    )
    current = json.loads(run("db", "current", "--json", env={DB_ENV_VAR: None}).stdout)
    assert (current["current"], current["up_to_date"]) == (None, False)
    assert not (tmp_path / "poolstride.db").exists()
    # The embedded default is created by the first submit, in the current folder.
    assert run(*SUBMIT, env={DB_ENV_VAR: None}).code == 0
    assert (tmp_path / "poolstride.db").exists()
    env_db = f"sqlite:///{tmp_path / 'env.db'}"
    assert run("db", "upgrade", env={DB_ENV_VAR: env_db}).code == 0
    assert run(*SUBMIT, env={DB_ENV_VAR: env_db}).code == 0
    assert run(*SUBMIT, env={DB_ENV_VAR: env_db}).code == 0
    flag_db = f"sqlite:///{tmp_path / 'flag.db'}"
    assert run(*SUBMIT, "--db", flag_db, env={DB_ENV_VAR: env_db}).code == 0  # --db wins
    counts = {}
    for name in ("poolstride.db", "env.db", "flag.db"):
        engine = make_engine(f"sqlite:///{tmp_path / name}")
        with Store(engine) as store:
            counts[name] = len(store.list_jobs())
    assert counts == {"poolstride.db": 1, "env.db": 2, "flag.db": 1}
    engine = make_engine(f"sqlite:///{tmp_path / 'env.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "not a url",
            "database URL 'not a url' is not a URL like sqlite:///poolstride.db or "
            "postgresql://user@host/db",
        ),
        (
            "mysql://u@h/db",
            "database URL 'mysql://u@h/db': only sqlite:/// and postgresql:// are supported",
        ),
    ],
)
def test_an_unparsable_or_unsupported_url_is_bad_input(url: str, message: str) -> None:
    assert refusal(run("jobs", "--db", url)) == message


@pytest.mark.parametrize(
    "args",
    [
        SUBMIT,
        ("jobs",),
        ("status", "1"),
        ("cancel", "1"),
        ("db", "upgrade"),
        ("db", "current"),
        ("worker", "--once"),
        ("run", *SUBMIT[1:]),
    ],
)
def test_an_unreachable_server_exits_1_with_one_line(args: tuple[str, ...]) -> None:
    # the input is fine, the server is not there (nothing listens on port 9)
    out = run(*args, "--db", "postgresql://nobody:secret@127.0.0.1:9/none")
    assert refusal(out, code=1) == (
        "database postgresql+psycopg://nobody:***@127.0.0.1:9/none: connection failed: "
        'connection to server at "127.0.0.1", port 9 failed: Connection refused'
    )
    assert "secret" not in out.stderr


def test_status_and_jobs_show_each_phase_and_the_cache(db_url: str) -> None:
    job = json.loads(run(*SUBMIT, "--seeds", "2", "--db", db_url, "--json").stdout)
    arch = ArchSpec.from_dict({"stages": [{"downsample": "max", "kernel": 3, "skip": "none"}] * 2})
    rows: list[tuple[Phase, CandidateState, bool]] = [
        ("search", "complete", False),
        ("search", "complete", True),
        ("search", "complete", False),
        ("confirm", "complete", True),
        ("confirm", "failed", False),
    ]
    with Store.open(db_url) as store:
        source = None
        for trial, (phase, state, cached) in enumerate(rows):
            cid = store.start_candidate(
                job_id=job["id"],
                trial_number=trial,
                optuna_trial_id=None,
                arch=arch,
                cost=arch_cost(arch, input_shape=(1, 8, 8)),
                seed=0,
                attempt=1,
                worker_id="w",
                epochs_total=1,
                phase=phase,
                cached_from=source if cached else None,
            )
            store.finish_candidate(candidate_id=cid, state=state, val_acc=0.5)
            source = source or cid
        store.record_plan(job["id"], "confirm", {"total": 3})
        skipped = [{"stage": 1, "choice": "kernel", "value": 9, "reason": "r"}] * 2
        store.record_plan(job["id"], "ablate", {"total": 8, "references": [0], "skipped": skipped})

    text = run("status", str(job["id"]), "--db", db_url).stdout.splitlines()
    assert text[3:6] == [
        "trials:      3/3 complete",
        "phases:      search 3/3, confirm 1/3 (1 failed), ablate 0/8 (2 variants skipped)",
        "results:     2 trained, 2 from the cache",
    ]
    status = json.loads(run("status", str(job["id"]), "--db", db_url, "--json").stdout)
    assert (status["trials_done"], status["trained"], status["cached"]) == (3, 2, 2)
    assert status["phases"] == [
        {"name": "search", "done": 3, "total": 3, "failed": 0},
        {"name": "confirm", "done": 1, "total": 3, "failed": 1},
        {"name": "ablate", "done": 0, "total": 8, "failed": 0},
    ]
    assert status["plan"]["ablate"]["skipped"] == skipped
    # the search is done: the job is in its confirm phase
    table = run("jobs", "--db", db_url).stdout.splitlines()
    assert table[1].split()[:4] == [str(job["id"]), "digits", "queued", "confirm"]


@pytest.mark.parametrize(
    "case", ["zero seeds", "unknown ablation", "references around one trial", "no training share"]
)
def test_run_refuses_bad_phase_flags_before_anything_exists(case: str, tmp_path: Path) -> None:
    flags, message = BAD_SUBMITS[case]
    db = tmp_path / "run.db"
    assert refusal(run("run", *SUBMIT[1:], *flags, "--db", f"sqlite:///{db}")) == message
    assert not db.exists()
