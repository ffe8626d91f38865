"""Databases poolstride cannot use are refused by the commands in one line, status 2, untouched:
a poolstride or Optuna schema revision this install does not know, an Optuna schema that needs
an upgrade, and a SQLite URL with a host in it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import text

from search.cli import cli
from search.store import (
    SchemaError,
    Store,
    current_revision,
    display_url,
    make_engine,
    normalize_url,
)
from search.store._schema import VERSION_TABLE

OPTUNA_VERSION_TABLE = "alembic_version"
SUBMIT = ("submit", "--dataset", "digits", "--trials", "1", "--epochs", "1")


def _refusal(*args: str) -> str:
    """The one ``poolstride: error:`` line of a command that must exit 2 and print nothing else."""
    result = CliRunner().invoke(cli, list(args))
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("poolstride: error: "), line
    return line.removeprefix("poolstride: error: ")


def _set_revision(url: str, table: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def _revisions_and_jobs(url: str) -> tuple[str | None, str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            optuna_rev = conn.scalar(text(f"SELECT version_num FROM {OPTUNA_VERSION_TABLE}"))
            jobs = conn.scalar(text("SELECT COUNT(*) FROM ps_jobs"))
        return current_revision(engine), str(optuna_rev), int(jobs or 0)
    finally:
        engine.dispose()


def _optuna_history() -> ScriptDirectory:
    return ScriptDirectory(str(Path(optuna.__file__).parent / "storages" / "_rdb" / "alembic"))


def test_db_upgrade_refuses_a_poolstride_revision_it_does_not_know(db_url: str) -> None:
    _set_revision(db_url, VERSION_TABLE, "ffff")
    before = _revisions_and_jobs(db_url)
    shown = display_url(normalize_url(db_url))
    assert _refusal("db", "upgrade", "--db", db_url) == (
        f"database {shown} has schema revision ffff, which this poolstride does not know: "
        "upgrade poolstride"
    )
    assert _revisions_and_jobs(db_url) == before


def test_submit_worker_and_upgrade_refuse_an_optuna_revision_this_optuna_does_not_know(
    db_url: str,
) -> None:
    _set_revision(db_url, OPTUNA_VERSION_TABLE, "v99.0.0")
    shown = display_url(normalize_url(db_url))
    refused = (
        f"database {shown} has Optuna schema revision v99.0.0, which this Optuna does not "
        "know: upgrade Optuna"
    )
    assert _refusal(*SUBMIT, "--db", db_url) == refused
    assert _refusal("worker", "--once", "--db", db_url) == refused
    assert _refusal("db", "upgrade", "--db", db_url) == refused
    with pytest.raises(SchemaError) as caught:
        Store.open(db_url, read_only=True)
    assert str(caught.value) == refused
    _, optuna_rev, jobs = _revisions_and_jobs(db_url)
    assert (optuna_rev, jobs) == ("v99.0.0", 0)  # no job queued, nothing migrated


def test_an_optuna_schema_that_needs_an_upgrade_is_refused(db_url: str) -> None:
    history = _optuna_history()
    head = history.get_current_head()
    assert head is not None
    older = history.get_revision(head).down_revision
    assert isinstance(older, str)
    _set_revision(db_url, OPTUNA_VERSION_TABLE, older)
    shown = display_url(normalize_url(db_url))
    assert _refusal(*SUBMIT, "--db", db_url) == (
        f"database {shown} Optuna schema is at revision {older}, Optuna needs {head}: run "
        "`poolstride db upgrade`"
    )
    assert _revisions_and_jobs(db_url)[1:] == (older, 0)


@pytest.mark.parametrize(
    "args",
    [
        ("status", "1"),
        ("db", "upgrade"),
        ("db", "current"),
        SUBMIT,
        ("worker", "--once"),
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_a_sqlite_url_with_a_host_is_refused_and_creates_nothing(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _refusal(*args, "--db", "sqlite://tmp/x.db") == (
        "database URL 'sqlite://tmp/x.db' names host 'tmp', which SQLite URLs do not take: "
        "write sqlite:///tmp/x.db (a path relative to the current folder) or "
        "sqlite:////tmp/x.db (an absolute path)"
    )
    assert list(tmp_path.iterdir()) == []


def test_every_part_of_a_sqlite_url_that_is_not_a_path_is_named() -> None:
    with pytest.raises(ValueError) as caught:
        normalize_url("sqlite://me:secret@files:5/x.db")
    assert str(caught.value) == (
        "database URL 'sqlite://me:***@files:5/x.db' names user 'me', host 'files' and port 5, "
        "which SQLite URLs do not take: write sqlite:///files/x.db (a path relative to the "
        "current folder) or sqlite:////files/x.db (an absolute path)"
    )
    assert normalize_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"


@pytest.mark.parametrize("args", [("db", "upgrade"), SUBMIT], ids=["db-upgrade", "submit"])
def test_a_sqlite_file_in_a_missing_folder_is_refused_by_its_folder(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}"
    assert _refusal(*args, "--db", url) == (
        f"database {url}: folder {str(tmp_path / 'nowhere')!r} does not exist"
    )
    assert list(tmp_path.iterdir()) == []
