"""`pareto`, `trials`, `analyze` and `status` on a database with known rows (SQLite and
PostgreSQL), and the `--where` grammar's refusals."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import pytest
from _cli import run
from _known import fill

from search.query import Condition, load_candidates, parse_where
from search.store import Store


@pytest.fixture
def job(store: Store) -> int:
    return fill(store)


def test_where_on_a_stage_returns_only_such_rows(store: Store, job: int, db_url: str) -> None:
    res = run(
        "trials", str(job), "--where", "s1.downsample=max", "--format", "json", "--db", db_url
    )
    assert res.code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["trial"] for r in rows] == [0, 2, 4, 6, 7]
    assert {r["s1.downsample"] for r in rows} == {"max"}
    # rows carry the flat stage parameters, metrics, costs, trial and state
    assert set(rows[0]) >= {
        "trial",
        "state",
        "s1.downsample",
        "s1.kernel",
        "s1.skip",
        "s2.downsample",
        "val_acc",
        "test_acc",
        "flops",
        "params",
        "latency_ms",
        "train_s",
    }
    assert rows[3] == {**rows[3], "state": "failed", "val_acc": None}


def test_where_flags_combine_with_and_sort_and_limit(store: Store, job: int, db_url: str) -> None:
    res = run(
        "trials",
        str(job),
        "--where",
        "s1.downsample=max",
        "--where",
        "val_acc>=0.78",
        "--where",
        "s1.kernel<5",
        "--sort",
        "-val_acc",
        "--format",
        "json",
        "--db",
        db_url,
    )
    assert [r["trial"] for r in json.loads(res.stdout)] == [0, 7]
    res = run(
        "trials", str(job), "--sort", "-val_acc", "--limit", "2", "--format", "json", "--db", db_url
    )
    assert [r["trial"] for r in json.loads(res.stdout)] == [5, 3]
    res = run("trials", str(job), "--where", "state!=complete", "--format", "json", "--db", db_url)
    assert [r["trial"] for r in json.loads(res.stdout)] == [6]
    # a stage key sorts too; missing val_acc sorts last either way
    frame = load_candidates(store, job, sort="-s1.kernel")
    assert frame["trial"].tolist()[:3] == [5, 2, 3]
    assert load_candidates(store, job, sort="val_acc")["trial"].tolist()[-1] == 6


def test_trials_csv_and_table(job: int, db_url: str) -> None:
    res = run("trials", str(job), "--where", "trial<2", "--format", "csv", "--db", db_url)
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["trial"], r["s1.downsample"], r["val_acc"]) for r in rows] == [
        ("0", "max", "0.8"),
        ("1", "strided", "0.82"),
    ]
    table = run("trials", str(job), "--where", "trial=1", "--db", db_url).stdout.splitlines()
    assert table[0].split()[:3] == ["trial", "state", "s1.downsample"]
    assert table[1].split()[:3] == ["1", "complete", "strided"]


@pytest.mark.parametrize(
    "expr, message",
    [
        ("s1.downsample=max'; DROP TABLE x", "s1.downsample is one of max, avg, strided, conv"),
        ("nokey>3", "unknown key 'nokey'"),
        ("val_acc>high", "val_acc needs a number"),
        ("s1.downsample<3", "s1.downsample takes = or != only"),
        ("s3.kernel=3", "the job has 2 stages"),
        ("val_acc", "expected KEY=VALUE, KEY!=VALUE, KEY<N, KEY<=N, KEY>N or KEY>=N"),
        ("1=1 OR 1=1", "expected KEY=VALUE"),
    ],
)
def test_bad_where_exits_2_with_one_line_and_changes_nothing(
    job: int, db_url: str, row_counts: Callable[[str], dict[str, int]], expr: str, message: str
) -> None:
    before = row_counts(db_url)
    res = run("trials", str(job), "--where", expr, "--db", db_url)
    assert res.code == 2
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("poolstride: error: ") and message in res.stderr
    assert row_counts(db_url) == before


def test_where_values_are_typed_for_their_key() -> None:
    assert parse_where(" s2.kernel >= 5 ") == Condition("s2.kernel", ">=", 5, 2, "kernel")
    assert parse_where("flops<1e6").value == 1e6
    assert parse_where("state=complete").value == "complete"
    with pytest.raises(ValueError, match="needs a number"):
        parse_where("flops<nan")
    with pytest.raises(ValueError, match="state is one of"):
        parse_where("state=done")


def test_pareto_formats_and_objectives(job: int, db_url: str) -> None:
    res = run("pareto", str(job), "--format", "json", "--db", db_url)
    assert res.code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["trial"] for r in rows] == [5, 3, 1]
    assert rows[2]["s1.downsample"] == "strided" and rows[2]["flops"] == 60
    three = json.loads(
        run(
            "pareto",
            str(job),
            "--objectives",
            "val_acc,flops,params",
            "--format",
            "json",
            "--db",
            db_url,
        ).stdout
    )
    assert sorted(r["trial"] for r in three) == [1, 3, 4, 5]
    csv_rows = list(
        csv.DictReader(
            io.StringIO(run("pareto", str(job), "--format", "csv", "--db", db_url).stdout)
        )
    )
    assert [r["trial"] for r in csv_rows] == ["5", "3", "1"]
    table = run("pareto", str(job), "--db", db_url).stdout
    assert "3 of 7 complete candidates on the front (val_acc, flops); hypervolume 0.8150" in table
    bad = run("pareto", str(job), "--objectives", "val_acc,test_acc", "--db", db_url)
    assert bad.code == 2 and "test_acc is reported, never optimised" in bad.stderr


def test_status_reports_front_size_and_hypervolume(job: int, db_url: str) -> None:
    res = run("status", str(job), "--json", "--db", db_url)
    data = json.loads(res.stdout)
    assert data["front_size"] == 3
    assert data["hypervolume"] == pytest.approx(0.815)
    text = run("status", str(job), "--db", db_url).stdout
    assert "front:       3 candidates, hypervolume 0.8150" in text


def test_analyze_json_and_table(job: int, db_url: str) -> None:
    res = run("analyze", str(job), "--format", "json", "--db", db_url)
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["complete"], report["front_size"]) == (7, 3)
    strided = next(
        r
        for r in report["stages"]
        if (r["stage"], r["choice"], r["value"]) == (1, "downsample", "strided")
    )
    assert strided["count"] == 2 and strided["val_acc_mean"] == pytest.approx(0.84)
    assert report["effects"][0]["text"].startswith(
        "stage 1: strided instead of max changes val_acc by +0.0200"
    )
    assert report["importances"] == {}  # no Optuna study behind these hand-made rows
    text = run("analyze", str(job), "--db", db_url).stdout
    assert "paired effects" in text and "strided instead of max" in text


def test_unknown_job_exits_2(store: Store, db_url: str) -> None:
    for args in (
        ("pareto", "99"),
        ("trials", "99"),
        ("analyze", "99"),
        ("export", "99", "--trial", "0", "--out", "/tmp/x.pt"),
    ):
        res = run(*args, "--db", db_url)
        assert res.code == 2, args
        assert "job 99" in res.stderr


def test_a_single_objective_front_is_the_best_candidates(job: int, db_url: str) -> None:
    res = run("pareto", str(job), "--objectives", "val_acc", "--format", "json", "--db", db_url)
    assert res.code == 0, res.stderr
    rows = json.loads(res.stdout)
    best = max(
        r["val_acc"]
        for r in json.loads(
            run(
                "trials", str(job), "--where", "state=complete", "--format", "json", "--db", db_url
            ).stdout
        )
    )
    assert rows and {r["val_acc"] for r in rows} == {best}


def test_reports_on_a_job_with_nothing_complete_yet(store: Store, db_url: str) -> None:
    from search.config import JobConfig

    job = store.submit(JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1}))
    for args in (("analyze", str(job.id)), ("pareto", str(job.id))):
        res = run(*args, "--db", db_url)
        assert res.code == 0, res.stderr
        assert "no complete candidates yet" in res.stdout + res.stderr
    empty = json.loads(run("analyze", str(job.id), "--format", "json", "--db", db_url).stdout)
    assert (empty["complete"], empty["stages"], empty["effects"]) == (0, [], [])
