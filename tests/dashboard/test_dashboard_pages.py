"""Every page of the dashboard under AppTest: what it must show, on real databases."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _dashboard_support import FinishedJob, RunningJob, poolstride
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from streamlit.testing.v1 import AppTest

from dashboard._data import read_only_engine
from search.analysis import stage_analysis
from search.query import load_candidates
from search.store import Store

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
    assert row["finished"] != "-"
    assert len(workers) == 1 and workers.iloc[0]["status"] == "stopped"
    assert not at.get("progress")  # nothing is running
    assert any("No job is queued or running." in c.value for c in at.caption)


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
    assert any("Refreshes every" in c.value for c in at.caption)


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
    scatter, history = _figures(at)
    front = next(t for t in scatter["data"] if t["name"] == "Pareto front")
    assert sorted(p[0] for p in front["customdata"]) == sorted(r["trial"] for r in cli)
    # every complete candidate is a point, coloured by s2.downsample (the default)
    complete = _frame(finished_job, where=["state=complete"])
    points = [p[0] for t in scatter["data"] for p in t["customdata"]]
    assert sorted(points) == sorted(complete["trial"])
    others = [t["name"] for t in scatter["data"] if t["name"] != "Pareto front"]
    assert all(name.startswith("s2.downsample=") for name in others)
    assert "s1 " in front["customdata"][0][1]  # hover names the architecture
    assert _values(history["data"][0]["x"]) == sorted(complete["trial"])


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
    assert scatter["layout"]["xaxis"]["title"]["text"].startswith("params")
    assert {t["name"].split("=")[0] for t in scatter["data"]} <= {"s1.kernel", "Pareto front"}


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
    words = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "Matched pairs" in words or "no matched-pair effect" in words


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

    at.text_input(key="trials_where").input("s1.kernel=4x").run()
    assert not at.exception
    assert "needs a number" in at.error[0].value


def test_architecture_page_draws_a_candidate_and_a_diff(
    finished_job: FinishedJob, open_page: OpenPage
) -> None:
    frame = _frame(finished_job).set_index("trial")
    at = open_page(finished_job.url, "architecture.py", job=finished_job.job_id, trial=3, a=3, b=5)
    parts = at.dataframe[0].value
    assert parts["part"].tolist() == ["stem", "s1", "s2", "head"]
    # the per-part costs add up to what the search stored for the candidate
    assert parts["params"].sum() == frame.loc[3, "params"]
    assert parts["FLOPs"].sum() == frame.loc[3, "flops"]
    assert parts.loc[1, "downsample"] == frame.loc[3, "s1.downsample"]
    assert parts.loc[2, "output"] == "16×2×2"  # 8×8 digits halved twice
    assert "digraph" in at.get("graphviz_chart")[0].proto.spec
    diff = next(d.value for d in at.dataframe if "differs" in d.value.columns).set_index("key")
    for key in ("s1.downsample", "s2.skip", "val_acc"):
        differs = str(frame.loc[3, key]) != str(frame.loc[5, key])
        assert bool(diff.loc[key, "differs"]) == differs


def test_the_database_is_read_only(db_url: str) -> None:
    engine = read_only_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM ps_jobs")).scalar_one() == 0
        with pytest.raises(DBAPIError, match=r"(?i)read.only|readonly"), engine.begin() as conn:
            conn.execute(text("DELETE FROM ps_jobs"))
    finally:
        engine.dispose()


def test_a_database_without_schema_is_one_error(
    empty_db_url: str,
    open_page: OpenPage,
) -> None:
    at = open_page(empty_db_url)
    assert len(at.error) == 1
    assert "poolstride db upgrade" in at.error[0].value
    assert not at.dataframe and not at.title  # no page ran


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path, open_page: OpenPage) -> None:
    path = tmp_path / "missing.db"
    at = open_page(f"sqlite:///{path}")
    assert "does not exist" in at.error[0].value
    assert not path.exists()
