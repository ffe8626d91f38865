"""``poolstride report``: one self-contained HTML file, on a job with planted effects (fast, no
training) and on a real run through the worker, opened in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _dashboard_support import (
    PLANTED_SKIPPED,
    ROOT,
    FinishedJob,
    PlantedJob,
    chrome,
    find_chromium,
    poolstride,
)
from PIL import Image
from plotly.offline import get_plotlyjs

from dashboard.figures import VERDICT_COLOURS
from dashboard.report import FIGURE_IDS
from search.config import JobConfig
from search.cost import arch_cost
from search.store import Store, upgrade

sys.path.insert(0, str(ROOT / "tests" / "cli"))
from _cli import refusal, run


def _report(url: str, job_id: int, out: Path) -> str:
    done = run("report", str(job_id), "--out", str(out), "--db", url)
    assert (done.code, done.stdout) == (0, ""), done.stderr
    assert done.stderr == f"report of job {job_id} written to {out}\n"
    return out.read_text(encoding="utf-8")


def figure(page: str, div_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data and layout of the plotly figure drawn into ``div_id``, read from its
    ``Plotly.newPlot`` call, with numeric arrays decoded."""
    call = re.search(rf'Plotly\.newPlot\(\s*"{div_id}",\s*', page)
    assert call, f"no figure {div_id}"
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(page, call.end())
    layout, _ = decoder.raw_decode(page, page.index("{", end))
    return _decoded(data), layout


def _decoded(value: Any) -> Any:
    """plotly writes numpy arrays base64-encoded (``bdata``): as plain lists."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


@pytest.fixture(scope="module")
def planted_page(planted_job: PlantedJob, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return _report(planted_job.url, planted_job.job_id, out)


def test_the_report_is_one_self_contained_file(planted_page: str) -> None:
    # plotly.js is inlined once, in the head; the page itself loads nothing from anywhere
    # (the bundle's own strings name plotly's site, for links it is told not to show)
    assert planted_page.count(get_plotlyjs()) == 1
    assert planted_page.index(get_plotlyjs()) < planted_page.index("</head>")
    page = planted_page.replace(get_plotlyjs(), "")
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    assert not re.search(r"https?://", page)
    # every figure calls the one copy: front, forest plot, curves
    assert planted_page.count("Plotly.newPlot(") == 3
    for div_id in FIGURE_IDS:
        assert f'id="{div_id}"' in planted_page


def test_the_forest_plot_names_the_planted_effects(planted_page: str) -> None:
    data, layout = figure(planted_page, "forest-plot")
    by_verdict = {t["name"]: t for t in data}
    worse, better = by_verdict["worse"], by_verdict["better"]
    assert (
        worse["y"] == ["s2 strided vs max"] and worse["marker"]["color"] == VERDICT_COLOURS["worse"]
    )
    assert better["y"] == ["s1 conv vs max"]
    # -5 points, its interval excludes zero; +2 points likewise
    (delta,) = worse["x"]
    assert delta == pytest.approx(-5.0, abs=0.3)
    assert delta + worse["error_x"]["array"][0] < 0
    assert better["x"][0] - better["error_x"]["arrayminus"][0] > 0
    same = by_verdict["no detectable difference"]["y"]
    assert sorted(same) == ["s1 avg vs max", "s1 strided vs max", "s2 avg vs max", "s2 conv vs max"]
    assert len(layout["yaxis"]["categoryarray"]) == 6  # one row per stage × alternative
    assert layout["shapes"][0]["x0"] == 0  # the zero line


def test_the_report_says_the_verdicts_and_recommendations(
    planted_job: PlantedJob, planted_page: str
) -> None:
    assert f"poolstride report · job {planted_job.job_id} (digits)" in planted_page
    assert "stage 2: strided instead of max: -5." in planted_page
    assert "stage 1: conv instead of max: +2." in planted_page
    assert "would be detected about half the time" in planted_page
    # the recommendation: conv at stage 1 for accuracy, strided never
    assert re.search(r"stage 1: for accuracy conv", planted_page)
    assert "stage 2: for accuracy max" in planted_page
    # the plan's skipped variant, with its reason
    assert str(PLANTED_SKIPPED["reason"]) in planted_page
    # the reference drawn part by part: input, stem, two stages, head
    assert planted_page.count('class="ps-part"') == 5
    assert "trial 0, the ablation&#x27;s reference; its trials 0, 4, 5" in planted_page
    # the setup: seeds, ablation, the phases' progress
    assert "3 per front member and per variant" in planted_page
    assert "search 4/4 · confirm 2/2 · ablate 18/18" in planted_page


def test_the_front_has_seed_error_bars_and_the_curves_the_variants(planted_page: str) -> None:
    data, _ = figure(planted_page, "front-plot")
    members = [t for t in data if t["name"].endswith("on the front")]
    spread = {
        p[0]: (p[6], std)
        for t in members
        for p, std in zip(t["customdata"], t["error_y"]["array"], strict=True)
    }
    # the front: the reference (trial 0), conv (trial 12) and strided (trial 9) at stage 1,
    # three seeds each, so a spread (one standard deviation of the planted seeds' accuracies)
    assert sorted(spread) == [0, 9, 12]
    assert all(n == 3 and std == pytest.approx(0.01, abs=0.002) for n, std in spread.values())
    curves, _ = figure(planted_page, "curves-plot")
    names = [t["name"] for t in curves]
    # the reference and its six variants, each the mean of three seeds
    assert names[0] == "reference (trial 0) (3 seeds)"
    assert "s2 strided vs max (3 seeds)" in names and len(names) == 7


def test_a_job_without_ablation_says_how_to_get_one(
    finished_job: FinishedJob, tmp_path: Path
) -> None:
    page = _report(finished_job.url, finished_job.job_id, tmp_path / "r.html")
    assert 'id="forest-plot"' not in page
    assert "This job ran no ablation" in page and "--ablate downsample" in page
    assert page.count("Plotly.newPlot(") == 2  # the front and the front's curves


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, planted_job: PlantedJob) -> None:
    url = f"sqlite:///{tmp_path / 'empty-job.db'}"
    upgrade(url)
    with Store.open(url) as store:
        job = store.submit(JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1}))
    out = tmp_path / "r.html"
    cases = [
        (("report", "99", "--out", str(out), "--db", url), "no job 99"),
        (
            ("report", str(job.id), "--out", str(out), "--db", url),
            f"job {job.id} has no complete candidates yet: nothing to report",
        ),
        (
            ("report", str(planted_job.job_id), "--out", str(tmp_path / "nope" / "r.html")),
            f"--out '{tmp_path / 'nope' / 'r.html'}': folder '{tmp_path / 'nope'}' does not exist",
        ),
        (
            ("report", str(planted_job.job_id), "--out", str(tmp_path)),
            f"Invalid value for '--out': File '{tmp_path}' is a directory.",
        ),
    ]
    for args, message in cases:
        assert refusal(run(*args, "--db", url) if "--db" not in args else run(*args)) == message
        # nothing but the database (and SQLite's files beside it)
        assert {
            p.name for p in tmp_path.iterdir() if not p.name.startswith("empty-job.db")
        } == set()


@pytest.mark.slow
def test_a_real_run_on_mnist5k_reports_its_verdicts_in_chromium(tmp_path: Path) -> None:
    # the whole design through the worker, tiny: 2 stages, one kernel and one skip, so the
    # ablation varies the downsampling only and reports the kernel and skip variants skipped
    url = f"sqlite:///{tmp_path / 'answer.db'}"
    done = poolstride(
        "run",
        *("--dataset", "mnist5k", "--stages", "2", "--widths", "4,8", "--epochs", "1"),
        *("--kernel", "3", "--skip", "none", "--trials", "3", "--seeds", "3", "--ablate", "all"),
        *("--json", "--db", url),
    )
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded", done.stderr
    phases = {p["name"]: p for p in job["phases"]}
    # around one reference: 2 stages × 3 other downsamplings × 3 seeds
    # the reference's three fresh seeds and its six variants' three
    assert (phases["ablate"]["done"], phases["ablate"]["total"]) == (21, 21)
    skipped = {(s["stage"], s["choice"], s["value"]) for s in job["plan"]["ablate"]["skipped"]}
    assert skipped == {
        (i, choice, value)
        for i in (1, 2)
        for choice, value in (("kernel", 5), ("kernel", 7), ("skip", "proj"), ("skip", "pool"))
    }
    out = tmp_path / "report.html"
    poolstride("report", str(job["id"]), "--out", str(out), "--db", url)
    page = out.read_text(encoding="utf-8")
    _, layout = figure(page, "forest-plot")
    rows = layout["yaxis"]["categoryarray"]
    assert len(rows) == 6 and {r.split()[0] for r in rows} == {"s1", "s2"}
    assert "the space excludes skip pool at stage 2" in page

    # opened as a user opens it: a file, no server, no network
    shot = tmp_path / "report.png"
    dom = chrome(
        find_chromium(),
        tmp_path / "profile",
        "--window-size=1400,3000",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        "--dump-dom",
        out.as_uri(),
    )
    forest = dom[dom.index('id="forest-plot"') : dom.index('id="curves-plot"')]
    # plotly drew the forest plot: a marker and an interval per effect (three seeds each), an
    # axis label per row
    assert "js-plotly-plot" in forest
    assert len(re.findall(r'<path class="point plotly-customdata"', forest)) == 6
    assert forest.count('class="errorbar"') == 6
    for row in rows:
        assert f">{row}</text>" in forest
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100  # drawn, not a blank page


def test_an_ablation_not_planned_yet_is_said_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'searching.db'}"
    upgrade(url)
    config = JobConfig.from_mapping(
        {"dataset": "digits", "trials": 4, "epochs": 1, "seeds": 3, "ablate": "downsample"}
    )
    arch = next(iter(config.space))
    with Store.open(url) as store:
        job = store.submit(config)
        cid = store.start_candidate(
            job_id=job.id,
            trial_number=0,
            optuna_trial_id=None,
            arch=arch,
            cost=arch_cost(arch, input_shape=config.space.input_shape),
            seed=1,
            attempt=1,
            worker_id=None,
            epochs_total=1,
        )
        store.finish_candidate(candidate_id=cid, state="complete", val_acc=0.5, epochs_done=1)
    page = _report(url, job.id, tmp_path / "r.html")
    assert "The ablation is not planned yet: it follows the search and its confirmation." in page
    assert 'id="forest-plot"' not in page
    assert "search 1/4 · confirm 0/? · ablate 0/?" in page
