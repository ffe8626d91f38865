"""``poolstride report``: one self-contained HTML file of a job's answer.

The command validates its input, reads the job with :mod:`search.query`, :mod:`search.pareto`
and :mod:`search.analysis`, and hands the rows to :mod:`dashboard.report`, imported (with
plotly) only when it runs: the CLI is the composition root, ``search/`` itself never imports
the dashboard.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import click

from search.analysis import ablation_effects, cost_objective, recommendations
from search.cli._common import Integer, database, db_option, fail
from search.cli._query import _none_complete
from search.pareto import architecture_means
from search.query import load_candidates, load_front
from search.store import Store, epochs_frame

__all__ = ["report"]


@click.command()
@click.argument("job_id", metavar="JOB", type=Integer())
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="HTML file to write.",
)
@db_option
def report(job_id: int, out: Path, db: str | None) -> None:
    """Write the job's report: one HTML file that opens offline.

    It holds the job's setup, the Pareto front of per-architecture means with seed error
    bars, a forest plot of every one-choice effect with its interval, the per-stage
    recommendations, the reference architecture and the learning curves. plotly's
    JavaScript is embedded once, so no network is needed to open it.
    """
    if not out.parent.is_dir():
        fail(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    from dashboard.report import ReportData, curve_groups, mean_curves, report_html

    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        frame = load_candidates(store, job_id, where=["state=complete"])
        if frame.empty:
            fail(f"{_none_complete(job)}: nothing to report")
        front = load_front(store, job_id)
        plan = (job.plan or {}).get("ablate") or {}
        references = tuple(int(t) for t in plan.get("references", []))
        cost = cost_objective(job.config.objectives)
        effects = ablation_effects(frame, references=references, cost=cost)
        advice = recommendations(frame, effects, cost=cost)
        groups = curve_groups(
            frame,
            effects=effects,
            reference=references[0] if references else None,
            front_trials=[int(t) for t in front.members["trial"]],
        )
        epochs = epochs_frame(store, job_id, trials=[t for ts in groups.values() for t in ts])
    page = report_html(
        ReportData(
            job=job,
            means=architecture_means(frame, job.config.objectives),
            front=front.rows,
            hypervolume=front.hypervolume,
            complete=front.complete,
            effects=effects,
            recommendations=advice,
            references=references,
            skipped=tuple(plan.get("skipped", [])),
            curves=mean_curves(epochs, groups),
            written_at=datetime.now(timezone.utc),
        )
    )
    _write(out, page)
    click.echo(f"report of job {job_id} written to {out}", err=True)


def _write(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` whole or not at all: a report cut short by a full disk or an
    interrupt never replaces a good one, nor leaves half a file."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
