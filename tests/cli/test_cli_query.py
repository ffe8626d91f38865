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
from search.cost import Cost
from search.query import Condition, load_candidates, load_front, output_columns, parse_where
from search.space import ArchSpec
from search.store import Store
from search.vocabulary import FinalStatus, Phase

KEYS = (
    "unknown key 'nokey' (expected sN.downsample, sN.kernel, sN.skip, sN.width, sN.depth or one "
    "of trial, state, phase, val_acc, test_acc, flops, params, activation_bytes, "
    "receptive_field, latency_ms, train_s, epochs_done, latency_rel, replicate, seed, reference, "
    "cached_from, gpu_share, stopped_at)"
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


SEEDS = (100, 200, 300)  # replicates 0, 1 and 2
# name: (stage 1 downsample, kernel, skip), stage 2 downsample, flops, val_acc per replicate
ARCHS: dict[str, tuple[tuple[str, int, str], str, int, tuple[float | None, ...]]] = {
    "ref": (("max", 3, "none"), "max", 100, (0.80, 0.82, 0.81)),
    "lucky": (("avg", 5, "none"), "max", 150, (0.86, 0.77, 0.78)),
    "s1 strided": (("strided", 3, "none"), "max", 60, (0.76, 0.77, 0.75)),
    "deep": (("max", 7, "pool"), "conv", 400, (0.70,)),
    "s1 avg": (("avg", 3, "none"), "max", 110, (0.815, 0.84, 0.82)),
    "s1 conv": (("conv", 3, "none"), "max", 80, (0.81, 0.845, 0.815)),
    "s2 avg": (("max", 3, "none"), "avg", 100, (0.81, 0.81, 0.82)),
    "s2 strided": (("max", 3, "none"), "strided", 70, (0.79, 0.80, None)),
}
# (trial, architecture, replicate, phase) in trial order: a search of four, the front's
# seeds (ref, lucky, s1 strided), the downsample variants of ref (trial 0)
PLAN: list[tuple[str, int, Phase]] = [
    ("ref", 0, "search"),
    ("lucky", 0, "search"),
    ("s1 strided", 0, "search"),
    ("deep", 0, "search"),
    *((name, k, "confirm") for name in ("ref", "lucky", "s1 strided") for k in (1, 2)),
    *(
        (name, k, "ablate")
        for name in ("s1 avg", "s1 conv", "s2 avg", "s2 strided")
        for k in (0, 1, 2)
    ),
]
SKIPPED = {"stage": 2, "choice": "downsample", "value": "conv", "reason": "the space excludes it"}


@pytest.fixture
def ablated_job(store: Store) -> int:
    return fill_ablated(store)


def fill_ablated(store: Store) -> int:
    """A job of three seeds with a downsample ablation around trial 0, by hand: a search of
    four, their front trained with two more seeds, the variants of trial 0 with three seeds
    (the last of stage-2 strided failed). ``lucky`` was on the front by its first seed only."""
    job = store.submit(
        JobConfig.from_mapping(
            {
                "dataset": "digits",
                "trials": 4,
                "epochs": 1,
                "space": {"stages": 2, "widths": [8, 16]},
                "seeds": 3,
                "ablate": "downsample",
            }
        )
    )
    for trial, (name, replicate, phase) in enumerate(PLAN):
        (d, k, skip), d2, flops, values = ARCHS[name]
        arch = ArchSpec.from_dict(
            {
                "stages": [
                    {"downsample": d, "kernel": k, "skip": skip, "width": 8},
                    {"downsample": d2, "kernel": 3, "skip": "none", "width": 16},
                ]
            }
        )
        cid = store.start_candidate(
            job_id=job.id,
            trial_number=trial,
            optuna_trial_id=None,
            arch=arch,
            cost=Cost(params=flops // 10, flops=flops, activation_bytes=1000, receptive_field=9),
            seed=SEEDS[replicate],
            attempt=1,
            worker_id="w",
            epochs_total=1,
            phase=phase,
            replicate=replicate,
            reference=0 if phase == "ablate" else None,
        )
        value = values[replicate] if replicate < len(values) else None
        if value is None:
            store.finish_candidate(candidate_id=cid, state="failed", error="boom")
        else:
            store.finish_candidate(
                candidate_id=cid,
                state="complete",
                val_acc=value,
                test_acc=value - 0.01,
                train_s=1.0,
                latency_ms=0.5,
            )
    store.record_plan(job.id, "confirm", {"total": 6})
    store.record_plan(job.id, "ablate", {"total": 12, "references": [0], "skipped": [SKIPPED]})
    return job.id


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
        "val_acc, flops, params, activation_bytes, latency_ms, latency_rel, train_s)"
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
    fields = dict(line.split(":", 1) for line in text)
    assert {k: fields[k].strip() for k in ("trials", "dataset", "objectives", "front")} == {
        "trials": "7/8 complete",
        "dataset": "digits",
        "objectives": "val_acc, flops",
        "front": "3 candidates, hypervolume 0.8150",
    }


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
    assert [e["text"] for e in report["matched_pairs"]] == [
        "stage 1: strided instead of max changes val_acc by +0.0200 ± 0.0100 and FLOPs by "
        "-40.0% (2 pairs)",
        "stage 1: kernel 5 instead of 3 changes val_acc by +0.0500 ± 0.0100 and FLOPs by "
        "+100.0% (2 pairs)",
    ]
    # no ablation: no verdicts, nothing else missing
    assert (report["reference"], report["references"], report["effects"]) == (None, [], [])
    assert (report["recommendations"], report["skipped"]) == ([], [])
    assert report["importances"] == {}  # no Optuna study behind these hand-made rows
    text = run("analyze", str(known_job), "--db", db_url).stdout.splitlines()
    assert text[:6] == [
        f"job {known_job}: 7 complete candidates, front of 3 over val_acc, flops, hypervolume "
        "0.8150",
        "",
        "verdicts: this job ran no ablation; submit with --ablate downsample|all (and --seeds 3 "
        "or more) for per-stage verdicts",
        "",
        "STAGE  CHOICE      VALUE    N  VAL_ACC  95% CI            FRONT  FLOPS  PARAMS",
        "1      downsample  max      4  0.7825   [0.7250, 0.8325]  0%     138    11",
    ]
    assert text[7] == "1      downsample  strided  2  0.8400   [0.8200, 0.8600]  67%    90     15"
    assert text[-4:] == [
        "",
        "matched pairs (architectures that differ in that one choice only):",
        *(f"  {e['text']}" for e in report["matched_pairs"]),
    ]


def test_analyze_gives_the_verdicts_of_the_ablation_first(ablated_job: int, db_url: str) -> None:
    text = run("analyze", str(ablated_job), "--db", db_url).stdout.splitlines()
    # the t quantile of 2 degrees of freedom at 97.5 % is 4.303: e.g. stage 1 strided's
    # differences -4, -5, -6 pt have a standard deviation of 1 pt, a half-width of 2.5 pt
    assert text[:16] == [
        f"job {ablated_job}: 21 complete candidates, front of 4 over val_acc, flops, "
        "hypervolume 0.7812",
        "",
        "verdicts (val_acc: mean of the seed-paired differences from the reference, 95 % "
        "t-interval):",
        "reference: trial 0 (max k3 none | max k3 none), val_acc 0.8100 ± 0.0100 over 3 seeds",
        "  stage 1: avg instead of max: +1.5 pt [+0.3, +2.7], +10 % FLOPs: costlier and better "
        "(±1.2 pt)",
        "  stage 1: strided instead of max: -5.0 pt [-7.5, -2.5], -40 % FLOPs: cheaper and worse "
        "(±2.5 pt)",
        "  stage 1: conv instead of max: no detectable difference (+1.3 pt [-1.3, +3.9]), -20 % "
        "FLOPs: cheaper (±2.6 pt)",
        "  stage 2: avg instead of max: no detectable difference (+0.3 pt [-2.5, +3.2]), same "
        "cost (±2.9 pt)",
        "  stage 2: strided instead of max: -1.5 pt (2 seeds: too few seeds for an interval), "
        "-30 % FLOPs: cheaper",
        "recommendations (around trial 0):",
        # conv is 0.2 pt below avg, within avg's interval, and 27 % cheaper; max is not
        "  stage 1: for accuracy avg; cheapest within the interval of the best: conv (-27 % FLOPs)",
        "  stage 2: for accuracy avg (not detectably better than max); cheapest within the "
        "interval of the best: avg (values with under 3 seeds left out)",
        "an effect of about ±2.5 pt would be detected about half the time (the median "
        "half-width; each line's own is after it)",
        "skipped: stage 2 downsample conv: the space excludes it",
        "",
        "STAGE  CHOICE      VALUE    N   VAL_ACC  95% CI            FRONT  FLOPS  PARAMS",
    ]
    assert "matched pairs (architectures that differ in that one choice only):" in text
    report = json.loads(run("analyze", str(ablated_job), "--format", "json", "--db", db_url).stdout)
    assert (report["complete"], report["architectures"], report["front_size"]) == (21, 8, 4)
    assert report["references"] == [report["reference"]]
    assert report["reference"] == {
        "trial": 0,
        "architecture": {
            "stages": [
                {"downsample": "max", "kernel": 3, "skip": "none", "width": w, "depth": 1}
                for w in (8, 16)
            ]
        },
        "val_acc": pytest.approx(0.81),
        "val_acc_std": pytest.approx(0.01),
        "n": 3,
    }
    effects = report["effects"]
    assert [(e["stage"], e["to"], e["variant"], e["n"], e["verdict"]) for e in effects] == [
        (1, "avg", 10, 3, "better"),
        (1, "strided", 2, 3, "worse"),  # the search's trial 2 and its confirm seeds
        (1, "conv", 13, 3, "no detectable difference"),
        (2, "avg", 16, 3, "no detectable difference"),
        (2, "strided", 19, 2, "too few seeds"),
    ]
    strided = effects[1]
    assert {k: strided[k] for k in ("choice", "from", "reference", "params_delta")} == {
        "choice": "downsample",
        "from": "max",
        "reference": 0,
        "params_delta": -4,
    }
    half = 4.302652729749462 * 0.01 / 3**0.5
    assert (strided["delta"], strided["ci_low"], strided["ci_high"]) == pytest.approx(
        (-0.05, -0.05 - half, -0.05 + half)
    )
    assert (strided["flops_ratio"], strided["cost_change"]) == pytest.approx((0.6, -0.4))
    assert effects[4]["ci_low"] is None and effects[4]["ci_high"] is None
    assert [(r["stage"], r["accuracy"], r["cheapest"]) for r in report["recommendations"]] == [
        (1, {"downsample": "avg"}, {"downsample": "conv"}),
        (2, {"downsample": "avg"}, {"downsample": "avg"}),
    ]
    assert report["skipped"] == [SKIPPED]
    assert len(report["matched_pairs"]) == 10


def test_pareto_of_several_seeds_shows_means_and_marks_the_fallen(
    store: Store, ablated_job: int, db_url: str
) -> None:
    front = load_front(store, ablated_job)
    # lucky (trial 1) and the reference (trial 0) were on the search's front; the reference's
    # own variants beat its mean
    assert front.rows["trial"].tolist() == [10, 13, 19, 2, 1, 0]
    assert front.rows["on_front"].tolist() == [True] * 4 + [False] * 2
    assert front.members["trial"].tolist() == [10, 13, 19, 2]
    assert (front.complete, front.architectures) == (21, 8)
    # losses (1 - mean val_acc, flops / 400) of the front, a staircase from (1, 1.1)
    steps = [(0.825, 110), (0.8233333, 80), (0.795, 70), (0.76, 60)]
    upper, by_hand = 1.1, 0.0
    for acc, flops in steps:
        by_hand += acc * (upper - flops / 400)
        upper = flops / 400
    assert front.hypervolume == pytest.approx(by_hand)
    rows = json.loads(run("pareto", str(ablated_job), "--format", "json", "--db", db_url).stdout)
    lucky = rows[-2]
    assert (lucky["trial"], lucky["trials"], lucky["n"], lucky["on_front"]) == (
        1,
        [1, 6, 7],
        3,
        False,
    )
    assert lucky["val_acc"] == pytest.approx((0.86 + 0.77 + 0.78) / 3)
    assert lucky["val_acc_std"] == pytest.approx(0.0493288, abs=1e-6)
    assert (rows[2]["n"], rows[2]["trials"]) == (2, [19, 20])  # its third seed failed
    table = run("pareto", str(ablated_job), "--db", db_url).stdout.splitlines()
    assert table == [
        "trial  n  s1.downsample  s1.kernel  s1.skip  s2.downsample  s2.kernel  s2.skip  "
        "val_acc           test_acc          flops  params  latency_ms  train_s  front",
        "10     3  avg            3          none     max            3          none     "
        "0.825 ± 0.01323   0.815 ± 0.01323   110    11      0.5 ± 0     1 ± 0    yes",
        "13     3  conv           3          none     max            3          none     "
        "0.8233 ± 0.01893  0.8133 ± 0.01893  80     8       0.5 ± 0     1 ± 0    yes",
        "19     2  max            3          none     strided        3          none     "
        "0.795 ± 0.007071  0.785 ± 0.007071  70     7       0.5 ± 0     1 ± 0    yes",
        "2      3  strided        3          none     max            3          none     "
        "0.76 ± 0.01       0.75 ± 0.01       60     6       0.5 ± 0     1 ± 0    yes",
        "1      3  avg            5          none     max            3          none     "
        "0.8033 ± 0.04933  0.7933 ± 0.04933  150    15      0.5 ± 0     1 ± 0    fell off",
        "0      3  max            3          none     max            3          none     "
        "0.81 ± 0.01       0.8 ± 0.01        100    10      0.5 ± 0     1 ± 0    fell off",
        "4 of 8 architectures on the front of their means over seeds (val_acc, flops; 21 "
        "complete candidates); hypervolume 0.7812; 2 architectures of the search's front fell "
        "off it (each beaten by its own mean over seeds or by an architecture trained later)",
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
        "architectures": 0,
        "front_size": 0,
        "hypervolume": 0.0,
        "reference": None,
        "references": [],
        "effects": [],
        "recommendations": [],
        "skipped": [],
        "stages": [],
        "matched_pairs": [],
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
