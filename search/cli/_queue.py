"""The queue: ``submit``, ``jobs``, ``status`` and ``cancel``. Nothing here trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from search.cli._common import (
    TIME_FORMAT,
    Integer,
    bad_input,
    count,
    database,
    db_option,
    emit_json,
    json_option,
    print_table,
    warn,
    when,
)
from search.cli._flags import SUBMIT_DEFAULTS, job_config_from_flags, job_options, space_options
from search.query import load_front
from search.store import JobInfo, Store
from search.vocabulary import JOB_STATUSES, JobStatus

__all__ = ["cancel", "jobs", "status", "submit"]

_JOB_COLUMNS = ("id", "name", "status", "phase", "priority", "trials", "attempts", "created")


@click.command()
@space_options
@job_options
@db_option
@json_option
def submit(db: str | None, as_json: bool, **flags: Any) -> None:
    """Queue a search: validate its config and add it to the queue; nothing is trained here.

    A brand-new SQLite database file gets its schema created on the way.
    """
    with bad_input():
        config = job_config_from_flags(defaults=SUBMIT_DEFAULTS, **flags)
    if config.data_dir is not None and not Path(config.data_dir).exists():
        # a worker on another machine may see it; say so, but queue the job
        warn(f"{config.data_dir!r} does not exist here; the worker that runs the job must have it")
    with database(db) as url, Store.open(url, create=True) as store:
        job = store.submit(config)
    if as_json:
        emit_json(job.to_dict())
        return
    named = f" {job.name!r}" if job.name != config.dataset else ""
    click.echo(
        f"job {job.id}{named} queued: {count(config.trials, 'trial')} of "
        f"{count(config.train.epochs, 'epoch')} on {config.dataset} (study {job.study_name})"
    )


@click.command()
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs with this status.")
@db_option
@json_option
def jobs(status: JobStatus | None, db: str | None, as_json: bool) -> None:
    """List the queue, oldest first.

    PHASE is the first phase of the job not done yet: search, confirm or ablate.
    """
    with database(db) as url, Store.open(url, read_only=True) as store:
        found = store.list_jobs(status)
    if as_json:
        emit_json([{k: v for k, v in job.to_dict().items() if k != "config"} for job in found])
        return
    if not found:
        click.echo("no jobs" + (f" with status {status}" if status else ""))
        return
    print_table(
        [c.upper() for c in _JOB_COLUMNS],
        [
            (
                str(j.id),
                j.name,
                j.status,
                _current_phase(j),
                str(j.priority),
                f"{j.trials_done}/{j.trials_total}",
                f"{j.attempts}/{j.max_attempts}",
                j.created_at.strftime(TIME_FORMAT),
            )
            for j in found
        ],
    )


@click.command()
@click.argument("job_id", metavar="JOB", type=Integer())
@db_option
@json_option
def status(job_id: int, db: str | None, as_json: bool) -> None:
    """Show one job: status, progress, attempts, lease and last error.

    Each phase's progress counts its complete candidates, those the cache served included, of
    its planned total ("?" until the worker planned it); the search's counts those early
    stopping stopped too, which use their share of --trials. "results" tells the candidates
    trained from those the cache served.
    """
    with database(db) as url, Store.open(url, read_only=True) as store:
        job = store.get_job(job_id)
        front = load_front(store, job_id)
    if as_json:
        emit_json(
            {**job.to_dict(), "front_size": len(front.members), "hypervolume": front.hypervolume}
        )
        return
    cfg = job.config
    lines = {
        "job": f"{job.id} {job.name!r}",
        "status": job.status
        + (" (cancel requested)" if job.cancel_requested and job.status == "running" else ""),
        "study": job.study_name,
        "trials": f"{job.trials_done}/{job.trials_total} "
        + (f"evaluated ({job.stopped} stopped early)" if job.stopped else "complete"),
        "phases": ", ".join(_progress(job, p.name) for p in job.phases),
        "results": f"{job.trained} trained, {job.cached} from the cache",
        "dataset": cfg.dataset,
        "objectives": ", ".join(cfg.objectives),
        "front": f"{count(len(front.members), 'candidate')}, hypervolume {front.hypervolume:.4f}",
        "sampler": cfg.sampler,
        "priority": str(job.priority),
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "worker": job.worker_id or "-",
        "lease until": when(job.lease_expires_at),
        "created": when(job.created_at),
        "started": when(job.started_at),
        "finished": when(job.finished_at),
        "error": job.error or "-",
    }
    width = max(map(len, lines))
    for key, value in lines.items():
        click.echo(f"{key + ':':<{width + 1}} {value}")


@click.command()
@click.argument("job_id", metavar="JOB", type=Integer())
@db_option
@json_option
def cancel(job_id: int, db: str | None, as_json: bool) -> None:
    """Cancel a job: a queued one at once, a running one at its worker's next heartbeat."""
    with database(db) as url, Store.open(url) as store:
        job = store.cancel(job_id)
    if as_json:
        emit_json(job.to_dict())
    elif job.status == "cancelled":
        click.echo(f"job {job.id} cancelled")
    else:
        click.echo(f"job {job.id}: cancel requested; its worker stops it at the next heartbeat")


def _progress(job: JobInfo, name: str) -> str:
    """``confirm 4/6``, with its failures and, for the ablation, its skipped variants."""
    (phase,) = (p for p in job.phases if p.name == name)
    total = "?" if phase.total is None else str(phase.total)
    notes = [f"{phase.failed} failed"] if phase.failed else []
    skipped = len(((job.plan or {}).get(name) or {}).get("skipped", []))
    if skipped:
        notes.append(f"{count(skipped, 'variant')} skipped")
    return f"{name} {phase.done}/{total}" + (f" ({', '.join(notes)})" if notes else "")


def _current_phase(job: JobInfo) -> str:
    """The first phase of the job not done (``-`` when every one is)."""
    return next((phase.name for phase in job.phases if not phase.ended), "-")
