"""The ``poolstride`` group, every command registered on it, and the entry point."""

from __future__ import annotations

import sys

import click

from search.cli._common import fail
from search.cli._dashboard import dashboard
from search.cli._data import data
from search.cli._db import db
from search.cli._query import analyze, export, pareto, trials
from search.cli._queue import cancel, jobs, status, submit
from search.cli._report import report
from search.cli._space import arch, space
from search.cli._work import run, worker
from search.cli._workers import workers

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """poolstride: search per-stage downsampling, kernels and skips of CNNs."""


# grouped by what they work on: the schema, the space, the queue, running jobs, datasets,
# results and the dashboard; ``--help`` lists them sorted
for command in (
    db,
    space,
    arch,
    submit,
    jobs,
    status,
    cancel,
    workers,
    worker,
    run,
    data,
    pareto,
    trials,
    analyze,
    report,
    export,
    dashboard,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Run ``poolstride`` with ``argv`` (default: the command line).

    Usage errors become one ``poolstride: error:`` line and status 2, as bad input does.

    Example:
        >>> main(["space", "--bogus"])
        Traceback (most recent call last):
        SystemExit: 2
    """
    try:
        cli.main(args=argv, prog_name="poolstride", standalone_mode=False)
    except click.ClickException as exc:
        fail(exc.format_message())
    except click.Abort:
        click.echo("poolstride: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
