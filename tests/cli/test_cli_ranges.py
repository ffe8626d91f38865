"""Input the database could not store, or that each backend would answer differently, is refused
before anything touches the database: the same one line and status 2 on SQLite and PostgreSQL,
nothing written. A stored row that a later limit would refuse still reads."""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli import refusal, run
from _known import fill

from search.config import JobConfig
from search.store import Store

SUBMIT = ("submit", "--dataset", "digits", "--trials", "3", "--epochs", "1", "--stages", "2")
INT32_MAX = 2**31 - 1
HUGE = "99999999999999999999"  # beyond 64 bits

# flags added to SUBMIT -> the refusal
BAD_SUBMITS: dict[str, tuple[tuple[str, ...], str]] = {
    "trials beyond 64 bits": (("--trials", HUGE), f"trials {HUGE} must be at most {INT32_MAX}"),
    "epochs beyond 32 bits": (
        ("--epochs", "2147483648"),
        f"epochs 2147483648 must be at most {INT32_MAX}",
    ),
    "batch size beyond 32 bits": (
        ("--batch-size", "2147483648"),
        f"batch_size 2147483648 must be at most {INT32_MAX}",
    ),
    "concurrency beyond 32 bits": (
        ("--concurrency", "2147483648"),
        f"concurrency 2147483648 must be at most {INT32_MAX}",
    ),
    "max attempts beyond 32 bits": (
        ("--max-attempts", "2147483648"),
        f"max_attempts 2147483648 must be at most {INT32_MAX}",
    ),
    # SQLite stored 2**33, PostgreSQL refused it
    "priority 2**33": (
        ("--priority", str(2**33)),
        f"priority 8589934592 must be at most {INT32_MAX}",
    ),
    "priority below 32 bits": (
        ("--priority", str(-(2**31) - 1)),
        "priority -2147483649 must be at least -2147483648",
    ),
    "negative seed": (("--seed", "-1"), "seed -1 must be at least 0"),
    "seed of 2**31": (("--seed", str(2**31)), f"seed 2147483648 must be at most {INT32_MAX}"),
    "huge seed": (("--seed", HUGE), f"seed {HUGE} must be at most {INT32_MAX}"),
    "kernel beyond 32 bits": (
        ("--kernel", f"3,{2**31 + 1}"),
        f"stage 1: kernel 2147483649 must be at most {INT32_MAX}",
    ),
    "width beyond 32 bits": (
        ("--widths", "8,2147483648"),
        f"stage 2: width 2147483648 must be at most {INT32_MAX}",
    ),
    "depth beyond 32 bits": (
        ("--depth", "1,2147483648"),
        f"stage 1: depth 2147483648 must be at most {INT32_MAX}",
    ),
    # a NUL: SQLite stored it, PostgreSQL refused it
    "NUL in the name": (("--name", "a\x00b"), "name 'a\\x00b' must not contain control characters"),
    "escape in the name": (
        ("--name", "red\x1b[31m"),
        "name 'red\\x1b[31m' must not contain control characters",
    ),
    "DEL in the name": (("--name", "a\x7fb"), "name 'a\\x7fb' must not contain control characters"),
    "C1 control in the name": (
        ("--name", "a\x9bb"),
        "name 'a\\x9bb' must not contain control characters",
    ),
    # a name byte that is not UTF-8, as Python hands it over from the command line
    "not UTF-8 in the name": (("--name", "caf\udce9"), "name 'caf\\udce9' is not valid UTF-8"),
}


def _snapshot(url: str, counts: Callable[[str], dict[str, int]]) -> tuple[dict[str, int], str]:
    """Rows per table, and for SQLite the file's bytes: nothing written means both unchanged."""
    digest = ""
    if url.startswith("sqlite:///"):
        digest = hashlib.sha256(Path(url.removeprefix("sqlite:///")).read_bytes()).hexdigest()
    return counts(url), digest


@pytest.mark.parametrize("case", list(BAD_SUBMITS))
def test_submit_refuses_what_a_database_cannot_store_alike_on_both(
    case: str, db_url: str, row_counts: Callable[[str], dict[str, int]]
) -> None:
    flags, message = BAD_SUBMITS[case]
    before = _snapshot(db_url, row_counts)
    assert refusal(run(*SUBMIT, *flags, "--db", db_url, "--json")) == message
    assert _snapshot(db_url, row_counts) == before


@pytest.mark.parametrize(
    "toml, message",
    [
        ("priority = 8589934592\n", f"priority 8589934592 must be at most {INT32_MAX}"),
        ('name = "a\\u0000b"\n', "name 'a\\x00b' must not contain control characters"),
        (
            "[space]\nkernel = [3, 2147483649]\n",
            f"stage 1: kernel 2147483649 must be at most {INT32_MAX}",
        ),
    ],
)
def test_a_toml_config_meets_the_same_limits(
    toml: str,
    message: str,
    db_url: str,
    tmp_path: Path,
    row_counts: Callable[[str], dict[str, int]],
) -> None:
    config = tmp_path / "job.toml"
    config.write_text(toml)
    before = _snapshot(db_url, row_counts)
    assert refusal(run(*SUBMIT, "--config", str(config), "--db", db_url)) == message
    assert _snapshot(db_url, row_counts) == before


def test_an_input_size_beyond_32_bits_is_refused(
    db_url: str, row_counts: Callable[[str], dict[str, int]]
) -> None:
    before = _snapshot(db_url, row_counts)
    args = ("--dataset", "synthetic", "--input", "1x8x2147483648", "--trials", "1", "--epochs", "1")
    assert refusal(run("submit", *args, "--db", db_url)) == (
        f"input shape 1x8x2147483648 has a size above {INT32_MAX}"
    )
    assert _snapshot(db_url, row_counts) == before


def test_a_refused_submit_creates_no_sqlite_file(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    for flags, _ in BAD_SUBMITS.values():
        refusal(run(*SUBMIT, *flags, "--db", f"sqlite:///{fresh}"))
    assert list(tmp_path.iterdir()) == []


def test_space_refuses_a_stage_count_beyond_the_input_at_once(tmp_path: Path) -> None:
    # the count is checked against the input before a list per stage is built: in a child
    # process limited to 4 GiB, which that list would exhaust
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "space", "--stages", str(10**12)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        preexec_fn=limit_memory,
        timeout=120,
    )
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr == (
        "poolstride: error: stage 6: its input is 1x1, which cannot be downsampled (input "
        f"1x28x28 allows at most 5 stages, got {10**12})\n"
    )


def test_space_refuses_what_submit_would() -> None:
    assert refusal(run("space", "--kernel", f"3,{2**31 + 1}")) == (
        f"stage 1: kernel 2147483649 must be at most {INT32_MAX}"
    )


def _job_range(name: str) -> str:
    return f"Invalid value for '{name}': {HUGE} is not in the range -2147483648<=x<=2147483647."


# the query and queue commands' integers: arguments -> the refusal
BAD_QUERIES: dict[str, tuple[tuple[str, ...], str]] = {
    "status of a huge job": (("status", HUGE), _job_range("JOB")),
    "cancel of a huge job": (("cancel", HUGE), _job_range("JOB")),
    "pareto of a huge job": (("pareto", HUGE), _job_range("JOB")),
    "trials of a huge job": (("trials", HUGE), _job_range("JOB")),
    "analyze of a huge job": (("analyze", HUGE), _job_range("JOB")),
    "export of a huge job": (
        ("export", HUGE, "--trial", "0", "--out", "{tmp}/a.pt"),
        _job_range("JOB"),
    ),
    "export of a huge trial": (
        ("export", "{job}", "--trial", HUGE, "--out", "{tmp}/a.pt"),
        _job_range("--trial"),
    ),
    "a limit beyond 64 bits": (
        ("trials", "{job}", "--limit", HUGE),
        f"Invalid value for '--limit': {HUGE} is not in the range 0<=x<={2**63 - 1}.",
    ),
    "a trial beyond 64 bits": (
        ("trials", "{job}", "--where", f"trial>{HUGE}000"),
        f"--where 'trial>{HUGE}000': {HUGE}000 is beyond the range of trial "
        "(-2147483648 to 2147483647)",
    ),
    "a width beyond 32 bits": (
        ("trials", "{job}", "--where", "s1.width=3000000000"),
        "--where 's1.width=3000000000': 3000000000 is beyond the range of s1.width "
        "(-2147483648 to 2147483647)",
    ),
    "flops beyond 64 bits": (
        ("trials", "{job}", "--where", "flops<1e19"),
        f"--where 'flops<1e19': 1e19 is beyond the range of flops ({-(2**63)} to {2**63 - 1})",
    ),
    "a stage the job lacks": (
        ("trials", "{job}", "--where", "s3.kernel=3"),
        "--where 's3.kernel=3': the job has 2 stages",
    ),
    "a sort on a stage the job lacks": (
        ("trials", "{job}", "--sort", "-s3.kernel"),
        "--sort '-s3.kernel': the job has 2 stages",
    ),
}


@pytest.mark.parametrize("case", list(BAD_QUERIES))
def test_query_commands_refuse_numbers_beyond_their_columns_alike_on_both(
    case: str,
    store: Store,
    db_url: str,
    tmp_path: Path,
    row_counts: Callable[[str], dict[str, int]],
) -> None:
    job = fill(store)
    args, message = BAD_QUERIES[case]
    before = _snapshot(db_url, row_counts)
    res = run(*(a.format(job=job, tmp=tmp_path) for a in args), "--db", db_url)
    assert refusal(res) == message
    assert _snapshot(db_url, row_counts) == before
    assert not (tmp_path / "a.pt").exists()


def test_a_float_metric_compared_with_a_huge_integer_answers_alike(
    store: Store, db_url: str
) -> None:
    job = fill(store)
    res = run("trials", str(job), "--where", f"val_acc<{HUGE}", "--format", "json", "--db", db_url)
    assert res.code == 0, res.stderr
    assert len(json.loads(res.stdout)) == 7  # every measured candidate; the failed one has none


def test_a_stored_row_that_submit_would_now_refuse_still_reads(store: Store, db_url: str) -> None:
    # written before the limits: a negative seed, a control character in the name and a
    # kernel beyond 32 bits (in the config's JSON) were all accepted then
    valid = JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1}).to_dict()
    space = {**valid["space"], "kernel": [3, 2**31 + 1]}
    old = store.submit(JobConfig.from_dict({**valid, "seed": -1, "name": "a\tb", "space": space}))
    assert refusal(run(*SUBMIT, "--seed", "-1", "--db", db_url)) == "seed -1 must be at least 0"

    listed = run("jobs", "--db", db_url, "--json")
    assert listed.code == 0, listed.stderr
    assert [(j["id"], j["name"]) for j in json.loads(listed.stdout)] == [(old.id, "a\tb")]
    assert run("jobs", "--db", db_url).code == 0
    status = run("status", str(old.id), "--db", db_url, "--json")
    assert status.code == 0, status.stderr
    assert json.loads(status.stdout)["config"]["seed"] == -1
