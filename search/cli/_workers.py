"""``workers``: the worker processes the queue knows of, and whether each is still heard from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import click

from search.cli._common import count, database, db_option, emit_json, json_option, print_table
from search.store import Store, WorkerInfo

__all__ = ["workers"]

_WORKER_COLUMNS = ("id", "host", "pid", "status", "job", "last heartbeat", "ago")


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Also list stopped workers.")
@db_option
@json_option
def workers(show_all: bool, db: str | None, as_json: bool) -> None:
    """List the workers: status, job and last heartbeat, most recently heard from first.

    A worker that said it was idle or busy but sent no heartbeat within its lease is lost
    (killed, hung or cut off from the database); a lost busy worker still names its job. AGO
    is the seconds since the last heartbeat. Stopped workers are listed with --all (--json
    lists them all). A worker registering deletes the rows of those not heard from for a week.
    """
    with database(db) as url, Store.open(url, read_only=True) as store:
        found = store.list_workers()
    if as_json:
        emit_json([w.to_dict() for w in found])
        return
    shown = found if show_all else [w for w in found if w.status != "stopped"]
    if shown:
        print_table([c.upper() for c in _WORKER_COLUMNS], _rows(shown, datetime.now(timezone.utc)))
    else:
        click.echo("no workers")
    if hidden := len(found) - len(shown):
        click.echo(f"{count(hidden, 'stopped worker')} not shown (--all lists them)", err=True)


def _rows(found: Sequence[WorkerInfo], now: datetime) -> list[tuple[str, ...]]:
    return [
        (
            w.id,
            w.hostname,
            str(w.pid),
            w.status,
            "-" if w.current_job_id is None else str(w.current_job_id),
            w.last_heartbeat.isoformat(timespec="seconds"),
            # this machine's clock, while lost is decided by the database's: a PostgreSQL
            # server whose clock is skewed from this one's shows here
            str(round((now - w.last_heartbeat).total_seconds())),
        )
        for w in found
    ]
