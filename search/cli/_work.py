"""Running searches: ``worker`` and ``run``.

They import ``workers.daemon`` (and with it torch and ray) inside their bodies, as every
command that uses ``workers`` does (``arch cost --measure``, ``data fetch``, ``export``), so
that a command starts without what it does not use.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from search.cli._common import (
    EXIT_FAILURE,
    Progress,
    bad_input,
    candidate_columns,
    count,
    database,
    db_option,
    die,
    emit_json,
    fail,
    json_option,
    stack,
)
from search.cli._flags import RUN_DEFAULTS, job_config_from_flags, job_options, space_options
from search.cli._query import echo_front, echo_verdicts
from search.query import load_front, to_records
from search.store import DEFAULT_LEASE_S, Store, display_url

__all__ = ["run", "worker"]

T = TypeVar("T")


_worker_options = stack(
    click.option(
        "--ray-address",
        metavar="ADDR",
        help="Join the Ray cluster whose head listens at ADDR (HOST:PORT), with the auth setting "
        "of $RAY_AUTH_MODE and $RAY_AUTH_TOKEN (default: start a private local instance).",
    ),
    click.option(
        "--lease-s",
        type=click.FloatRange(min=1),
        default=DEFAULT_LEASE_S,
        show_default=True,
        help="Lease length: another worker takes the job over this long after "
        "this one stops heartbeating.",
    ),
)


@click.command()
@click.option("--once", is_flag=True, help="Run one job (if any is queued), then exit.")
@click.option("--drain", is_flag=True, help="Run jobs until the queue is empty, then exit.")
@click.option(
    "--cpus-per-trial", type=float, help="CPU share per trial on this worker (overrides the job's)."
)
@click.option(
    "--gpus-per-trial",
    type=float,
    help="GPU share per trial on this worker, e.g. 0.25 (overrides the job's).",
)
@_worker_options
@db_option
def worker(
    once: bool,
    drain: bool,
    ray_address: str | None,
    cpus_per_trial: float | None,
    gpus_per_trial: float | None,
    lease_s: float,
    db: str | None,
) -> None:
    """Claim queued jobs and run them on Ray until stopped (SIGTERM or Ctrl-C hand back cleanly)."""
    if once and drain:
        fail("--once and --drain exclude each other")
    if cpus_per_trial is not None and cpus_per_trial <= 0:
        fail(f"--cpus-per-trial {cpus_per_trial} must be positive")
    if gpus_per_trial is not None and gpus_per_trial < 0:
        fail(f"--gpus-per-trial {gpus_per_trial} must not be negative")
    with database(db) as url:
        Store.open(url).close()  # refuse a missing or out-of-date schema before starting Ray
        # a worker's log usually goes to a file: each line as it happens, not at exit
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
        _quiet_libraries()
        from workers.daemon import Worker

        runner = Worker(
            url,
            lease_s=lease_s,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            on_progress=_log_progress,
        )
        click.echo(f"worker {runner.id} on {display_url(url)}", err=True)
        outcomes = _on_ray(runner.run, once=once, drain=drain, ray_address=ray_address)
    if not outcomes:
        click.echo("no queued job", err=True)
    for job_id, outcome in outcomes:
        click.echo(
            f"job {job_id}: {outcome.status}, {outcome.completed} complete, "
            f"{outcome.failed} failed" + (f" ({outcome.error})" if outcome.error else ""),
            err=True,
        )


@click.command()
@space_options
@job_options
@_worker_options
@db_option
@json_option
def run(
    db: str | None, as_json: bool, ray_address: str | None, lease_s: float, **flags: Any
) -> None:
    """Submit a search, work it to its end here, then print its Pareto front and verdicts.

    Defaults: mnist5k with 1,000 validation images, the default space at widths 16/32/64
    (3 stages, 46,656 architectures), 8 search trials of 3 epochs, the front confirmed with 3
    seeds, and every other downsample at every stage of the most accurate front member
    trained with the same 3 seeds. A TOML's keys and the flags override them.
    """
    with bad_input():
        config = job_config_from_flags(defaults=RUN_DEFAULTS, **flags)
    if config.data_dir is not None and not Path(config.data_dir).exists():
        fail(f"--data-dir {config.data_dir!r} does not exist")
    with database(db) as url:
        with Store.open(url, create=True) as store:
            job = store.submit(config)
        click.echo(
            f"job {job.id}: {count(config.trials, 'trial')} of "
            f"{count(config.train.epochs, 'epoch')} on {config.dataset}, study "
            f"{job.study_name}, database {display_url(url)}",
            err=True,
        )
        _quiet_libraries()
        from workers.daemon import Worker

        with _PhaseBars() as bars:
            worker = Worker(url, lease_s=lease_s, on_progress=bars.update)
            _on_ray(worker.run, job_id=job.id, ray_address=ray_address)
        with Store.open(url, read_only=True) as store:
            job = store.get_job(job.id)
            front = load_front(store, job.id)
            if as_json:
                emit_json(
                    {
                        **{k: v for k, v in job.to_dict().items() if k != "config"},
                        "pareto": to_records(front.members[candidate_columns(job)]),
                    }
                )
            else:
                click.echo(
                    f"job {job.id} {job.status}: {job.trials_done}/{job.trials_total} search "
                    "trials "
                    + (f"evaluated ({job.stopped} stopped early)" if job.stopped else "complete")
                    + f", {job.trained} trained, {job.cached} from the cache"
                    + (f" ({job.error})" if job.error else "")
                )
                if not front.rows.empty:
                    click.echo(f"Pareto front ({', '.join(config.objectives)}):")
                    echo_front(job, front)
                    click.echo("")
                    echo_verdicts(store, job)
    if job.status != "succeeded":
        sys.exit(EXIT_FAILURE)


def _on_ray(work: Callable[..., T], **kwargs: Any) -> T:
    """``work(**kwargs)``, a Ray cluster that does not answer ending the command in one line."""
    from workers.ray_session import RayUnavailableError

    try:
        return work(**kwargs)
    except RayUnavailableError as exc:
        die(str(exc))


def _quiet_libraries() -> None:
    """Quieter logs for a worker: Optuna's, Ray's and Alembic's warnings only, and the
    worker's own lines (its jobs and retries) at INFO on stderr.

    Ray's environment variables are :mod:`workers.ray_session`'s to set.
    """
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )


class _PhaseBars:
    """The progress of a job's phases: one :class:`Progress` each, ``PHASE trials``, opened
    when the phase starts and closed when the next one does."""

    def __init__(self) -> None:
        self._phase: str | None = None
        self._bar: Progress | None = None

    def __enter__(self) -> _PhaseBars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def update(self, job_id: int, phase: str, done: int, total: int | None, failed: int) -> None:
        """The worker's progress callback."""
        bar = self._bar
        if bar is None or phase != self._phase:
            self.__exit__(None, None, None)
            self._phase = phase
            bar = self._bar = Progress(f"{phase} trials", total or 0).__enter__()
        bar.update(done, total=total, note=f"{failed} failed" if failed else "")


def _log_progress(job_id: int, phase: str, done: int, total: int | None, failed: int) -> None:
    click.echo(
        f"job {job_id}: {phase} {done}/{'?' if total is None else total} trials complete"
        + (f", {failed} failed" if failed else ""),
        err=True,
    )
