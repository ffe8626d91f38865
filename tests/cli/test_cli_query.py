"""`pareto`, `trials`, `analyze` and `status` on a database with known rows (SQLite and
PostgreSQL), and the `--where` grammar's refusals."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import pytest
from _cli import refusal, run
from _known import fill

from search.config import JobConfig
from search.query import Condition, load_candidates, output_columns, parse_where
from search.store import Store
from search.vocabulary import FinalStatus

KEYS = (
    "unknown key 'nokey' (expected sN.downsample, sN.kernel, sN.skip, sN.width, sN.depth or one "
    "of trial, state, val_acc, test_acc, flops, params, activation_bytes, receptive_field, "
    "latency_ms, train_s, epochs_done)"
)
GRAMMAR = "expected KEY=VALUE, KEY!=VALUE, KEY<N, KEY<=N, KEY>N or KEY>=N"
TRIALS_HEADER = (
    "trial  state     s1.downsample  s1.kernel  s1.skip  s2.downsample  s2.kernel  s2.skip  "
    "val_acc  test_acc  flops  params  latency_ms  train_s"
)


@pytest.fixture
def known_job(store: Store) -> int:
    """The job of ``_known.ROWS``: two stages on digits, eight candidates, one failed."""
    return fill(store)


def test_where_on_a_stage_returns_only_such_rows(known_job: int, db_url: str) -> None:
    res = run(
        "trials", str(known_job), "--where", "s1.downsample=max", "--format", "json", "--db", db_url
    )
    assert res.code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["trial"] for r in rows] == [0, 2, 4, 6, 7]
    assert {r["s1.downsample"] for r in rows} == {"max"}
    # rows carry the flat stage parameters, metrics, costs, trial and state, in that order
    assert [list(r) for r in rows] == [output_columns(2)] * 5
    assert rows[3] == {**rows[3], "state": "failed", "val_acc": None}


def test_where_flags_combine_with_and_sort_and_limit(
    store: Store, known_job: int, db_url: str
) -> None:
    job = str(known_job)
    res = run(
        "trials",
        job,
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
        "trials", job, "--sort", "-val_acc", "--limit", "2", "--format", "json", "--db", db_url
    )
    assert [r["trial"] for r in json.loads(res.stdout)] == [5, 3]
    res = run("trials", job, "--where", "state!=complete", "--format", "json", "--db", db_url)
    assert [r["trial"] for r in json.loads(res.stdout)] == [6]
    # a stage key sorts too; missing val_acc sorts last either way
    frame = load_candidates(store, known_job, sort="-s1.kernel")
    assert frame["trial"].tolist()[:3] == [5, 2, 3]
    assert load_candidates(store, known_job, sort="val_acc")["trial"].tolist()[-1] == 6


def test_trials_csv_and_table(known_job: int, db_url: str) -> None:
    res = run("trials", str(known_job), "--where", "trial<2", "--format", "csv", "--db", db_url)
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["trial"], r["s1.downsample"], r["val_acc"]) for r in rows] == [
        ("0", "max", "0.8"),
        ("1", "strided", "0.82"),
    ]
    assert list(rows[0]) == output_columns(2)
    table = run("trials", str(known_job), "--where", "trial<3", "--db", db_url)
    assert table.stdout.splitlines() == [
        TRIALS_HEADER,
        "0      complete  max            3          none     max            3          none     "
        "0.8      0.79      100    10      0.5         1",
        "1      complete  strided        3          none     max            3          none     "
        "0.82     0.81      60     10      0.5         1",
        "2      complete  max            5          none     max            3          none     "
        "0.85     0.84      200    20      0.5         1",
    ]
    none = run("trials", str(known_job), "--where", "val_acc>2", "--db", db_url)
    assert (none.code, none.stdout) == (0, "no candidates match\n")


@pytest.mark.parametrize(
    "expr, message",
    [
        (
            "s1.downsample=max'; DROP TABLE x",
            '--where "s1.downsample=max\'; DROP TABLE x": s1.downsample is one of max, avg, '
            "strided, conv",
        ),
        ("nokey>3", f"--where 'nokey>3': {KEYS}"),
        ("val_acc>high", "--where 'val_acc>high': val_acc needs a number, got 'high'"),
        ("s1.downsample<3", "--where 's1.downsample<3': s1.downsample takes = or != only"),
        ("s3.kernel=3", "--where 's3.kernel=3': the job has 2 stages"),
        ("val_acc", f"--where 'val_acc': {GRAMMAR}"),
        ("1=1 OR 1=1", f"--where '1=1 OR 1=1': {GRAMMAR}"),
    ],
)
def test_bad_where_exits_2_with_one_line_and_changes_nothing(
    known_job: int,
    db_url: str,
    row_counts: Callable[[str], dict[str, int]],
    expr: str,
    message: str,
) -> None:
    before = row_counts(db_url)
    assert refusal(run("trials", str(known_job), "--where", expr, "--db", db_url)) == message
    assert row_counts(db_url) == before


def test_bad_sort_and_objectives_exit_2(known_job: int, db_url: str) -> None:
    job = str(known_job)
    sort = run("trials", job, "--sort", "nokey", "--db", db_url)
    assert refusal(sort) == f"--sort 'nokey': {KEYS}"
    empty = run("pareto", job, "--objectives", " , ", "--db", db_url)
    assert refusal(empty) == "--objectives ' , ': name at least one objective"
    reported = run("pareto", job, "--objectives", "val_acc,test_acc", "--db", db_url)
    assert refusal(reported) == (
        "unknown objective 'test_acc' (test_acc is reported, never optimised) (expected one of "
        "val_acc, flops, params, activation_bytes, latency_ms, train_s)"
    )


def test_where_values_are_typed_for_their_key() -> None:
    assert parse_where(" s2.kernel >= 5 ") == Condition("s2.kernel", ">=", 5, 2, "kernel")
    assert parse_where("flops<1e6").value == 1e6
    assert parse_where("state=complete").value == "complete"
    with pytest.raises(ValueError) as nan:
        parse_where("flops<nan")
    assert str(nan.value) == "--where 'flops<nan': flops needs a number, got 'nan'"
    with pytest.raises(ValueError) as done:
        parse_where("state=done")
    assert (
        str(done.value) == "--where 'state=done': state is one of running, complete, pruned, failed"
    )


def test_pareto_formats_and_objectives(known_job: int, db_url: str) -> None:
    job = str(known_job)
    res = run("pareto", job, "--format", "json", "--db", db_url)
    assert res.code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["trial"] for r in rows] == [5, 3, 1]
    assert (rows[2]["s1.downsample"], rows[2]["flops"]) == ("strided", 60)
    three = json.loads(
        run(
            "pareto",
            job,
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
        csv.DictReader(io.StringIO(run("pareto", job, "--format", "csv", "--db", db_url).stdout))
    )
    assert [r["trial"] for r in csv_rows] == ["5", "3", "1"]
    table = run("pareto", job, "--db", db_url).stdout.splitlines()
    assert table == [
        TRIALS_HEADER.replace("state     ", ""),
        "5      avg            7          pool     conv           7          proj     0.9      "
        "0.89      400    40      0.5         1",
        "3      strided        5          none     max            3          none     0.86     "
        "0.85      120    20      0.5         1",
        "1      strided        3          none     max            3          none     0.82     "
        "0.81      60     10      0.5         1",
        "3 of 7 complete candidates on the front (val_acc, flops); hypervolume 0.8150",
    ]


def test_status_reports_front_size_and_hypervolume(known_job: int, db_url: str) -> None:
    data = json.loads(run("status", str(known_job), "--json", "--db", db_url).stdout)
    assert data["front_size"] == 3
    assert data["hypervolume"] == pytest.approx(0.815)
    text = run("status", str(known_job), "--db", db_url).stdout.splitlines()
    assert text[3:7] == [
        "trials:      7/8 complete",
        "dataset:     digits",
        "objectives:  val_acc, flops",
        "front:       3 candidates, hypervolume 0.8150",
    ]


def test_analyze_json_and_table(known_job: int, db_url: str) -> None:
    res = run("analyze", str(known_job), "--format", "json", "--db", db_url)
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["complete"], report["front_size"]) == (7, 3)
    strided = next(
        r
        for r in report["stages"]
        if (r["stage"], r["choice"], r["value"]) == (1, "downsample", "strided")
    )
    assert strided["count"] == 2 and strided["val_acc_mean"] == pytest.approx(0.84)
    assert [e["text"] for e in report["effects"]] == [
        "stage 1: strided instead of max changes val_acc by +0.0200 ± 0.0100 and FLOPs by "
        "-40.0% (2 pairs)",
        "stage 1: kernel 5 instead of 3 changes val_acc by +0.0500 ± 0.0100 and FLOPs by "
        "+100.0% (2 pairs)",
    ]
    assert report["importances"] == {}  # no Optuna study behind these hand-made rows
    text = run("analyze", str(known_job), "--db", db_url).stdout.splitlines()
    assert text[:4] == [
        f"job {known_job}: 7 complete candidates, front of 3 over val_acc, flops, hypervolume "
        "0.8150",
        "",
        "STAGE  CHOICE      VALUE    N  VAL_ACC  95% CI            FRONT  FLOPS  PARAMS",
        "1      downsample  max      4  0.7825   [0.7250, 0.8325]  0%     138    11",
    ]
    assert text[5] == "1      downsample  strided  2  0.8400   [0.8200, 0.8600]  67%    90     15"
    assert text[-4:] == [
        "",
        "paired effects (architectures that differ in that one choice only):",
        *(f"  {e['text']}" for e in report["effects"]),
    ]


def test_unknown_job_exits_2(store: Store, db_url: str) -> None:
    for args in (
        ("pareto", "99"),
        ("trials", "99"),
        ("analyze", "99"),
        ("export", "99", "--trial", "0", "--out", "/tmp/x.pt"),
    ):
        assert refusal(run(*args, "--db", db_url)) == "no job 99", args


def test_a_single_objective_front_is_the_best_candidates(known_job: int, db_url: str) -> None:
    res = run(
        "pareto", str(known_job), "--objectives", "val_acc", "--format", "json", "--db", db_url
    )
    assert res.code == 0, res.stderr
    assert [(r["trial"], r["val_acc"]) for r in json.loads(res.stdout)] == [(5, 0.9)]


def test_reports_on_a_job_with_nothing_complete_yet(store: Store, db_url: str) -> None:
    job = store.submit(JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1}))
    for args in (("analyze", str(job.id)), ("pareto", str(job.id))):
        res = run(*args, "--db", db_url)
        assert (res.code, res.stdout, res.stderr) == (
            0,
            f"job {job.id} has no complete candidates yet\n",
            "",
        )
    empty = json.loads(run("analyze", str(job.id), "--format", "json", "--db", db_url).stdout)
    assert empty == {
        "job": job.id,
        "objectives": ["val_acc", "flops"],
        "complete": 0,
        "front_size": 0,
        "hypervolume": 0.0,
        "stages": [],
        "effects": [],
        "importances": {},
    }


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_reports_on_an_ended_job_with_nothing_complete_say_it_ended(
    store: Store, db_url: str, status: FinalStatus
) -> None:
    job = store.submit(JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1}))
    if status == "cancelled":
        store.cancel(job.id)  # a queued job ends at once
    else:
        assert store.claim("w", 60) is not None
        store.finish_job(job.id, "w", status)
    for command in ("pareto", "analyze"):
        res = run(command, str(job.id), "--db", db_url)
        assert (res.code, res.stdout, res.stderr) == (
            0,
            f"job {job.id} has ended ({status}) with no complete candidates\n",
            "",
        ), command
