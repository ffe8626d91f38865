"""Every page of the dashboard under AppTest: what it must show, on real databases."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _dashboard_support import FinishedJob, PlantedJob, RunningJob, poolstride
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from streamlit.testing.v1 import AppTest

import dashboard._data
import search.query
import search.store
from dashboard.tables import fmt_time
from search.analysis import (
    ablation_effects,
    describe_effect,
    paired_effects,
    recommendations,
    stage_analysis,
)
from search.config import JobConfig
from search.cost import arch_cost
from search.datasets import DatasetFacts
from search.pareto import architecture_means
from search.query import load_candidates
from search.space import ArchSpec
from search.store import Store, upgrade

OpenPage = Callable[..., AppTest]


def _figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _values(data: Any) -> list[Any]:
    """A figure's data array: plotly sends numpy arrays base64-encoded (``bdata``)."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return list(data)


def _frame(finished: FinishedJob, **kwargs: Any) -> Any:
    with Store.open(finished.url) as store:
        return load_candidates(store, finished.job_id, **kwargs)


def test_queue_shows_a_finished_job_and_its_worker(
    finished_job: FinishedJob, open_page: OpenPage
) -> None:
    at = open_page(finished_job.url)
    jobs, workers = (d.value for d in at.dataframe)
    row = jobs.set_index("job").loc[finished_job.job_id]
    assert (row["status"], row["trials"], row["progress"]) == ("succeeded", "8/8", 1.0)
    with Store.open(finished_job.url) as store:
        job = store.get_job(finished_job.job_id)
    assert (row["created"], row["finished"]) == (
        fmt_time(job.created_at),
        fmt_time(job.finished_at),
    )
    assert "error" not in jobs.columns and not at.code  # no job failed
    assert len(workers) == 1 and workers.iloc[0]["status"] == "stopped"
    assert not at.warning  # a stopped worker is not lost
    assert not at.get("progress")  # nothing is running
    assert "Times are UTC, month-day hour:minute. No job is queued or running." in [
        c.value for c in at.caption
    ]


def test_queue_shows_a_running_jobs_progress(
    running_job: RunningJob,
    open_page: OpenPage,
) -> None:
    at = open_page(running_job.url)
    bar = at.get("progress")
    assert len(bar) == 1
    assert bar[0].proto.value == 50  # 3 of 6, in percent
    assert f"{running_job.done}/{running_job.total} trials complete" in bar[0].proto.text
    assert running_job.worker_id in bar[0].proto.text
    jobs, workers = (d.value for d in at.dataframe)
    row = jobs.set_index("job").loc[running_job.job_id]
    assert (row["status"], row["trials"], row["progress"]) == ("running", "3/6", 0.5)
    assert workers.iloc[0]["worker"] == running_job.worker_id
    assert workers.iloc[0]["job"] == running_job.job_id
    assert (
        "Times are UTC, month-day hour:minute. Refreshes every 3 s while jobs are queued or "
        "running." in [c.value for c in at.caption]
    )


def test_queue_shows_a_failed_jobs_error_whole(db_url: str, open_page: OpenPage) -> None:
    error = "RuntimeError: " + "a long reason, " * 30
    config = JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1})
    with Store.open(db_url) as store:
        job = store.submit(replace(config, name="doomed"))
        store.register_worker("w")
        assert store.claim("w", lease_seconds=60) is not None
        store.finish_job(job.id, "w", "failed", error=error)
    at = open_page(db_url)
    jobs = at.dataframe[0].value
    assert jobs.set_index("job").loc[job.id, "status"] == "failed"
    assert [c.value for c in at.code] == [error]
    assert at.code[0].proto.wrap_lines  # read in full, not cut at the window's edge
    assert f"**Job {job.id} (doomed, failed)**" in [m.value for m in at.markdown]


def test_queue_warns_of_a_lost_worker(db_url: str, open_page: OpenPage) -> None:
    config = JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1})
    with Store.open(db_url) as store:
        job = store.submit(config)
        store.register_worker("gone", lease_seconds=0.1)
        assert store.claim("gone", lease_seconds=60) is not None
        time.sleep(0.3)  # three leases without a heartbeat
        store.register_worker("alive")
    at = open_page(db_url)
    workers = at.dataframe[1].value.set_index("worker")
    assert workers.loc["gone", ["status", "job"]].tolist() == ["lost", job.id]
    assert workers.loc["alive", "status"] == "idle"
    assert [w.value for w in at.warning] == ["1 worker lost: no heartbeat within its lease"]


def test_pareto_front_equals_the_cli(finished_job: FinishedJob, open_page: OpenPage) -> None:
    cli = json.loads(
        poolstride(
            "pareto", str(finished_job.job_id), "--format", "json", "--db", finished_job.url
        ).stdout
    )
    at = open_page(finished_job.url, "pareto.py", job=finished_job.job_id)
    table = at.dataframe[0].value
    assert table["trial"].tolist() == [row["trial"] for row in cli]
    assert table["val_acc"].tolist() == [row["val_acc"] for row in cli]
    # as the Trials table: metrics first, the widths and depths the job fixed left out
    assert table.columns.tolist()[:5] == ["trial", "val_acc", "test_acc", "flops", "params"]
    assert not {"s1.width", "s1.depth", "s2.width", "s2.depth"} & set(table.columns)
    scatter, history = _figures(at)
    traces = scatter["data"]
    members = [t for t in traces if t["name"].endswith(" on the front")]
    assert sorted(p[0] for t in members for p in t["customdata"]) == sorted(r["trial"] for r in cli)
    # every complete architecture is one point (the search may train one twice), coloured by
    # s2.downsample (the default)
    complete = architecture_means(
        _frame(finished_job, where=["state=complete"]), ["val_acc", "flops"]
    ).set_index("trial")
    points = [p[0] for t in traces if t["name"] != "Pareto front" for p in t["customdata"]]
    assert sorted(points) == sorted(complete.index)
    # one legend entry per value of the job's candidates, front members listed under theirs
    # (a value only the front has is listed by its members)
    groups = {t.get("legendgroup") or t["name"]: t for t in traces if t.get("showlegend", True)}
    assert set(groups) == {
        "Pareto front",
        *(f"s2.downsample={v}" for v in complete["s2.downsample"]),
    }
    for member in members:
        # a front member is drawn in its group's colour, and has the group's value
        group = groups[member["legendgroup"]]
        assert member["marker"]["color"] == group["marker"]["color"]
        value = member["legendgroup"].split("=")[1]
        assert {complete.loc[p[0], "s2.downsample"] for p in member["customdata"]} == {value}
    first = members[0]["customdata"][0]
    assert first[1].startswith(f"s1 {complete.loc[first[0], 's1.downsample']} ")  # the hover
    assert _values(history["data"][0]["x"]) == sorted(complete.index)


def test_pareto_other_objectives_and_colour(
    finished_job: FinishedJob,
    open_page: OpenPage,
) -> None:
    at = open_page(
        finished_job.url, "pareto.py", job=finished_job.job_id, x="params", color="s1.kernel"
    )
    cli = json.loads(
        poolstride(
            "pareto",
            str(finished_job.job_id),
            "--objectives",
            "val_acc,params",
            "--format",
            "json",
            "--db",
            finished_job.url,
        ).stdout
    )
    assert at.dataframe[0].value["trial"].tolist() == [row["trial"] for row in cli]
    scatter = _figures(at)[0]
    assert scatter["layout"]["xaxis"]["title"]["text"] == "params (minimize)"
    kernels = sorted(set(_frame(finished_job, where=["state=complete"])["s1.kernel"]))
    groups = [t["name"] for t in scatter["data"] if not t["name"].endswith(" on the front")]
    assert groups == [*(f"s1.kernel={k}" for k in kernels), "Pareto front"]


def test_stages_page_charts_the_analysis(finished_job: FinishedJob, open_page: OpenPage) -> None:
    at = open_page(finished_job.url, "stages.py", job=finished_job.job_id)
    figures = _figures(at)
    assert len(figures) == 2  # one panel per stage
    expected = stage_analysis(_frame(finished_job, where=["state=complete"]))
    for stage, fig in enumerate(figures, 1):
        assert fig["layout"]["title"]["text"] == f"Stage {stage}"
        mine = expected[(expected.stage == stage) & (expected.choice == "downsample")]
        bars = fig["data"][0]  # accuracy of the downsample column
        assert _values(bars["x"]) == [str(v) for v in mine["value"]]
        assert _values(bars["y"]) == pytest.approx(mine["val_acc_mean"].tolist())
    effects = paired_effects(_frame(finished_job, where=["state=complete"]))
    words = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for stage in (1, 2):
        sentences = [describe_effect(e) for e in effects[effects.stage == stage].to_dict("records")]
        expected = (
            "**Matched pairs** (architectures that differ in this one choice):\n"
            + "\n".join(f"- {s}" for s in sentences)
            if sentences
            else "No two candidates differ in a single choice of this stage, so there "
            "is no matched-pair effect to report."
        )
        assert expected in words


def test_trials_page_filters_like_the_cli(
    finished_job: FinishedJob,
    open_page: OpenPage,
) -> None:
    at = open_page(finished_job.url, "trials.py", job=finished_job.job_id)
    assert at.dataframe[0].value["trial"].tolist() == list(range(8))
    curves = _figures(at)[0]
    assert [t["name"] for t in curves["data"]] == [f"trial {i}" for i in range(5)]

    at.text_input(key="trials_where").input("s1.kernel>=5, state=complete")
    at.text_input(key="trials_sort").input("-val_acc").run()
    cli = json.loads(
        poolstride(
            "trials",
            str(finished_job.job_id),
            "--where",
            "s1.kernel>=5",
            "--where",
            "state=complete",
            "--sort",
            "-val_acc",
            "--format",
            "json",
            "--db",
            finished_job.url,
        ).stdout
    )
    assert at.dataframe[0].value["trial"].tolist() == [row["trial"] for row in cli]
    assert at.caption[0].value == (
        f"{len(cli)} of job {finished_job.job_id}'s candidates match. Columns the job's space "
        "fixes are left out unless filtered or sorted on. Select rows to draw their learning "
        "curves."
    )

    at.text_input(key="trials_where").input("s1.kernel=4x").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "--where 's1.kernel=4x': s1.kernel needs a number, got '4x'"
    ]


def test_trials_table_leads_with_what_is_filtered_and_drops_fixed_columns(
    finished_job: FinishedJob, open_page: OpenPage
) -> None:
    # the job searched 2 stages of fixed widths 8 and 16 and depth 1
    at = open_page(finished_job.url, "trials.py", job=finished_job.job_id)
    assert at.dataframe[0].value.columns.tolist()[:6] == [
        "trial",
        "val_acc",
        "test_acc",
        "flops",
        "params",
        "state",
    ]
    fixed = {"s1.width", "s1.depth", "s2.width", "s2.depth"}
    assert not fixed & set(at.dataframe[0].value.columns)
    at.text_input(key="trials_where").input("s2.width=16")
    at.text_input(key="trials_sort").input("-s1.kernel").run()
    shown = at.dataframe[0].value
    assert shown.columns.tolist()[:4] == ["trial", "s2.width", "s1.kernel", "val_acc"]
    assert not {"s1.width", "s1.depth", "s2.depth"} & set(shown.columns)


def test_trials_page_reads_only_the_curves_it_draws(
    finished_job: FinishedJob, open_page: OpenPage, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[Any] = []

    def epochs_frame(store: Store, job_id: int, *, trials: Any = None) -> Any:
        read.append(("epochs", trials))
        return search.store.epochs_frame(store, job_id, trials=trials)

    def count_candidates(store: Store, job_id: int, *, where: Any = ()) -> int:
        read.append(("count", tuple(where)))
        return search.query.count_candidates(store, job_id, where=where)

    monkeypatch.setattr(dashboard._data, "epochs_frame", epochs_frame)
    monkeypatch.setattr(dashboard._data, "count_candidates", count_candidates)
    at = open_page(finished_job.url, "trials.py", job=finished_job.job_id, where="state=complete")
    assert read == [("count", ("state=complete",)), ("epochs", (0, 1, 2, 3, 4))]
    curves = _figures(at)[0]["data"]
    with Store.open(finished_job.url) as store:
        expected = search.store.epochs_frame(store, finished_job.job_id, trials=[0])
    assert _values(curves[0]["y"]) == expected["val_acc"].tolist()


def test_architecture_page_draws_a_candidate_and_a_diff(
    finished_job: FinishedJob, open_page: OpenPage
) -> None:
    frame = _frame(finished_job).set_index("trial")
    at = open_page(finished_job.url, "architecture.py", job=finished_job.job_id, trial=3, a=3, b=5)
    parts = at.dataframe[0].value
    assert parts["part"].tolist() == ["stem", "s1", "s2", "head"]
    # the per-part costs, written with thousands separators, add up to what the search stored
    # (digits has 10 classes)
    assert sum(int(p.replace(",", "")) for p in parts["params"]) == frame.loc[3, "params"]
    assert sum(int(f.replace(",", "")) for f in parts["FLOPs"]) == frame.loc[3, "flops"]
    assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", f) for f in parts["FLOPs"])
    assert parts.loc[1, "downsample"] == frame.loc[3, "s1.downsample"]
    assert parts.loc[2, "output"] == "16×2×2"  # 8×8 digits halved twice
    assert parts.loc[3, "output"] == "10×1×1"
    assert "digraph" in at.get("graphviz_chart")[0].proto.spec
    assert [m.value for m in at.metric][:4] == [
        f"{frame.loc[3, 'val_acc']:.4f}",
        f"{frame.loc[3, 'test_acc']:.4f}",
        f"{frame.loc[3, 'params']:,}",
        f"{frame.loc[3, 'flops']:,}",
    ]
    code = at.code[0]
    assert json.loads(code.value)["stages"][0]["kernel"] == frame.loc[3, "s1.kernel"]
    assert code.proto.wrap_lines  # the whole architecture is readable, not cut at the edge
    diff = next(d.value for d in at.dataframe if "differs" in d.value.columns).set_index("key")
    for key in ("s1.downsample", "s2.skip", "val_acc"):
        differs = str(frame.loc[3, key]) != str(frame.loc[5, key])
        assert bool(diff.loc[key, "differs"]) == differs
    assert diff.loc["flops", "A"] == f"{frame.loc[3, 'flops']:,}"
    assert not at.info  # the class count is known


def test_architecture_page_reads_the_recorded_class_count(
    tmp_path: Path, open_page: OpenPage
) -> None:
    url = f"sqlite:///{tmp_path / 'classes.db'}"
    upgrade(url)
    arch = ArchSpec.from_dict(
        {"stages": [{"downsample": "max", "kernel": 3, "skip": "none", "width": 8}] * 2}
    )
    with Store.open(url) as store:
        recorded, unknown = (_one_candidate_job(store, arch, facts) for facts in (FACTS_7, None))
    at = open_page(url, "architecture.py", job=recorded, trial=0)
    parts = at.dataframe[0].value.set_index("part")
    # 7 classes, as the worker recorded: the head's 8·7 + 7 parameters, the stored total
    assert parts.loc["head", ["params", "output"]].tolist() == ["63", "7×1×1"]
    stored = arch_cost(arch, input_shape=(1, 8, 8), num_classes=7).params
    assert sum(int(p.replace(",", "")) for p in parts["params"]) == stored
    assert not at.info

    at = open_page(url, "architecture.py", job=unknown, trial=0)
    parts = at.dataframe[0].value.set_index("part")
    assert parts.loc["head", ["params", "FLOPs", "output"]].tolist() == ["-", "-", "?×1×1"]
    assert parts.loc["s1", "params"] != "-"
    assert [i.value for i in at.info] == [
        f"The class count of job {unknown}'s dataset (npz) is unknown: no worker has recorded "
        "it for this job and the dataset's name does not fix it. The head's parameters and "
        "FLOPs are left blank."
    ]


FACTS_7 = DatasetFacts(7, (1, 8, 8), (0.5,), (0.25,))


def _one_candidate_job(store: Store, arch: ArchSpec, facts: DatasetFacts | None) -> int:
    """An npz job (its name does not fix the class count) with one complete candidate."""
    config = JobConfig.from_mapping(
        {
            "dataset": "npz",
            "data_dir": "/data/x.npz",
            "trials": 1,
            "epochs": 1,
            "space": {"stages": 2, "widths": [8, 8], "input": "1x8x8"},
        }
    )
    job = store.submit(config)
    if facts is not None:
        store.record_dataset(job.id, facts)
    classes = facts.num_classes if facts else 10
    cid = store.start_candidate(
        job_id=job.id,
        trial_number=0,
        optuna_trial_id=None,
        arch=arch,
        cost=arch_cost(arch, input_shape=(1, 8, 8), num_classes=classes),
        seed=0,
        attempt=1,
        worker_id="w",
        epochs_total=1,
    )
    store.finish_candidate(candidate_id=cid, state="complete", val_acc=0.5, train_s=0.1)
    return job.id


def test_the_database_is_read_only(db_url: str) -> None:
    engine = dashboard._data.store(db_url).engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM ps_jobs")).scalar_one() == 0
    with pytest.raises(DBAPIError, match=r"(?i)read.only|readonly"), engine.begin() as conn:
        conn.execute(text("DELETE FROM ps_jobs"))


def test_a_database_without_schema_is_one_error(
    empty_db_url: str,
    open_page: OpenPage,
) -> None:
    at = open_page(empty_db_url)
    shown = search.store.display_url(search.store.normalize_url(empty_db_url))
    # an SQLite file that is not there yet is not created (and so has no schema either)
    problem = (
        "does not exist: run `poolstride db upgrade`, or pass the right --db"
        if empty_db_url.startswith("sqlite")
        else "has no poolstride schema: run `poolstride db upgrade`"
    )
    assert [e.value for e in at.error] == [f"database {shown} {problem}"]
    assert not at.dataframe and not at.title  # no page ran


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path, open_page: OpenPage) -> None:
    path = tmp_path / "missing.db"
    at = open_page(f"sqlite:///{path}")
    assert [e.value for e in at.error] == [
        f"database sqlite:///{path} does not exist: run `poolstride db upgrade`, or pass the "
        "right --db"
    ]
    assert not path.exists()


def _planted_effects(planted: PlantedJob) -> tuple[Any, Any]:
    frame = _frame(FinishedJob(planted.url, planted.job_id), where=["state=complete"])
    effects = ablation_effects(frame, references=[planted.reference])
    return effects, recommendations(frame, effects)


def test_stages_page_shows_the_verdicts_first(planted_job: PlantedJob, open_page: OpenPage) -> None:
    at = open_page(planted_job.url, "stages.py", job=planted_job.job_id)
    forest, *panels = _figures(at)
    assert len(panels) == 2  # then one panel per stage, as before
    effects, advice = _planted_effects(planted_job)
    # the forest plot of the report: a row per effect, the planted ones named by their verdict
    traces = {t["name"]: t for t in forest["data"]}
    assert traces["worse"]["y"] == ["s2 strided vs max"]
    assert traces["better"]["y"] == ["s1 conv vs max"]
    assert len(forest["layout"]["yaxis"]["categoryarray"]) == len(effects) == 6
    words = [m.value for m in at.markdown]
    assert "\n".join(f"- {t}" for t in effects["text"]) in words
    assert (
        f"**Recommendations** (around trial {planted_job.reference}):\n"
        + "\n".join(f"- {t}" for t in advice["text"])
        in words
    )
    assert (
        "**Variants not trained:**\n- stage 1: kernel 5: the space excludes kernel 5 at stage 1"
        in words
    )
    (caption,) = [c.value for c in at.caption if c.value.startswith("Around trial")]
    assert caption.endswith("would be detected about half the time.")
    assert [s.value for s in at.subheader][:2] == ["Verdicts", "Every candidate, stage by stage"]


def test_stages_page_without_an_ablation_says_how_to_get_one(
    finished_job: FinishedJob, open_page: OpenPage
) -> None:
    at = open_page(finished_job.url, "stages.py", job=finished_job.job_id)
    (info,) = [i.value for i in at.info]
    assert info.startswith("This job ran no ablation") and "`--ablate downsample`" in info


def test_queue_shows_each_jobs_phase(planted_job: PlantedJob, open_page: OpenPage) -> None:
    at = open_page(planted_job.url)
    row = at.dataframe[0].value.set_index("job").loc[planted_job.job_id]
    assert (row["trials"], row["phase"]) == ("4/4", "ablate")
    assert row["phases"] == "search 4/4 · confirm 2/2 · ablate 18/18"


def test_pareto_page_draws_means_with_seed_error_bars(
    planted_job: PlantedJob, open_page: OpenPage
) -> None:
    at = open_page(planted_job.url, "pareto.py", job=planted_job.job_id)
    cli = json.loads(
        poolstride(
            "pareto", str(planted_job.job_id), "--format", "json", "--db", planted_job.url
        ).stdout
    )
    table = at.dataframe[0].value
    assert table["trial"].tolist() == [row["trial"] for row in cli]
    assert table["val_acc"].tolist() == pytest.approx([row["val_acc"] for row in cli])
    assert table["n"].tolist() == [row["n"] for row in cli]
    assert {row["n"] for row in cli if row["on_front"]} == {3}
    scatter = _figures(at)[0]
    # one point per architecture (10 of them, 24 candidates), at its mean
    points = [p[0] for t in scatter["data"] if t["name"] != "Pareto front" for p in t["customdata"]]
    assert len(points) == 10
    members = [t for t in scatter["data"] if t["name"].endswith(" on the front")]
    bars = [v for t in members for v in _values(t["error_y"]["array"])]
    assert bars == pytest.approx([row["val_acc_std"] for row in cli if row["on_front"]])
    assert "Points are means over seeds, bars one standard deviation." in at.caption[0].value
