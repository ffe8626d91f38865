"""The queue commands: output contracts, bad input, schema refusal and the database URL rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli import run

from search.store import DB_ENV_VAR, Store, downgrade, make_engine

SUBMIT = ("submit", "--dataset", "digits", "--trials", "3", "--epochs", "1", "--stages", "2")


def test_submit_jobs_status_cancel(db_url: str) -> None:
    first = run(*SUBMIT, "--name", "one", "--priority", "4", "--db", db_url, "--json")
    assert first.code == 0, first.stderr
    job = json.loads(first.stdout)
    assert (job["status"], job["priority"], job["name"]) == ("queued", 4, "one")
    assert job["study"] == f"poolstride-job-{job['id']}"
    assert job["config"]["space"]["input"] == "1x8x8"
    run(*SUBMIT, "--name", "two", "--db", db_url)

    listed = json.loads(run("jobs", "--db", db_url, "--json").stdout)
    assert [(j["name"], j["trials_done"], j["trials_total"]) for j in listed] == [
        ("one", 0, 3),
        ("two", 0, 3),
    ]
    table = run("jobs", "--db", db_url).stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "STATUS", "PRIORITY"]
    assert len(table) == 3 and "0/3" in table[1]

    status = json.loads(run("status", str(job["id"]), "--db", db_url, "--json").stdout)
    for key in ("id", "status", "study", "trials_done", "trials_total", "attempts", "error"):
        assert key in status
    assert "study:" in run("status", str(job["id"]), "--db", db_url).stdout

    assert run("cancel", str(job["id"]), "--db", db_url).code == 0
    assert (
        json.loads(run("jobs", "--status", "cancelled", "--db", db_url, "--json").stdout)[0]["id"]
        == job["id"]
    )
    with Store.open(db_url) as store:
        running = store.claim("w", 60)
    assert running is not None
    out = run("cancel", str(running.id), "--db", db_url)
    assert "cancel requested" in out.stdout


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


BAD_SUBMITS = {
    "unknown dataset": ("--dataset", "imagenet"),
    "unknown sampler": ("--sampler", "cmaes"),
    "unknown objective": ("--objectives", "val_acc,test_acc"),
    "space too deep": ("--stages", "4"),
    "bad kernel": ("--kernel", "4"),
    "zero trials": ("--trials", "0"),
    "negative epochs": ("--epochs", "-1"),
    "not a number": ("--trials", "many"),
    "contradicting input": ("--input", "3x32x32"),
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
        out = run(*SUBMIT, *BAD_SUBMITS[case], "--db", db_url, "--json")
    else:
        out = run(case.split()[-1], "999", "--db", db_url)
    assert out.code == 2
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("poolstride: error: ")
    assert _snapshot(db_url, row_counts) == before


def test_an_out_of_date_schema_is_refused_by_every_command(db_url: str) -> None:
    run(*SUBMIT, "--db", db_url)
    downgrade(db_url, "base")
    for args in (SUBMIT, ("jobs",), ("status", "1"), ("cancel", "1")):
        out = run(*args, "--db", db_url)
        assert out.code == 2, args
        assert len(out.stderr.splitlines()) == 1 and "`poolstride db upgrade`" in out.stderr
    assert "head is" in run("db", "current", "--db", db_url).stdout
    assert run("db", "upgrade", "--db", db_url).code == 0
    current = json.loads(run("db", "current", "--db", db_url, "--json").stdout)
    assert current["up_to_date"] and current["current"] == current["head"]
    assert run("jobs", "--db", db_url, "--json").stdout.strip() == "[]"


def test_database_url_from_flag_env_or_default(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    # No database yet: reading commands refuse and create no file.
    out = run("jobs", env={DB_ENV_VAR: None})
    assert out.code == 2 and "poolstride db upgrade" in out.stderr
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


def test_an_unparsable_or_unsupported_url_is_bad_input() -> None:
    for url in ("not a url", "mysql://u@h/db"):
        out = run("jobs", "--db", url)
        assert out.code == 2 and len(out.stderr.splitlines()) == 1
