"""``poolstride db upgrade`` and ``poolstride db current``: the schema."""

from __future__ import annotations

import click

from search.cli._common import database, db_option, emit_json, json_option
from search.store import (
    Store,
    current_revision,
    display_url,
    head_revision,
    missing_sqlite_file,
    upgrade,
)

__all__ = ["db"]


@click.group()
def db() -> None:
    """Create, upgrade and inspect the database schema."""


@db.command("upgrade")
@db_option
def db_upgrade_cmd(db: str | None) -> None:
    """Create or upgrade poolstride's tables and Optuna's."""
    with database(db) as url:
        revision = upgrade(url)
    click.echo(f"database {display_url(url)} is at revision {revision} (head)")


@db.command("current")
@db_option
@json_option
def db_current_cmd(db: str | None, as_json: bool) -> None:
    """Print the database's poolstride schema revision."""
    with database(db) as url:
        current = None
        # asking a missing SQLite file would create it
        if not missing_sqlite_file(url):
            with Store.open(url, read_only=True, check=False) as store:
                current = current_revision(store.engine)
        head = head_revision()
    if as_json:
        emit_json({"current": current, "head": head, "up_to_date": current == head})
    elif current == head:
        click.echo(f"{current} (head)")
    else:
        click.echo(f"{current or 'none'} (head is {head}: run `poolstride db upgrade`)")
