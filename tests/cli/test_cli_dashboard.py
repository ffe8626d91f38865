"""``poolstride dashboard`` refuses what it cannot serve before starting Streamlit, and finds
the app through the installed ``dashboard`` package."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from _cli import refusal, run

from search.cli import app_path, streamlit_command
from search.store import display_url, normalize_url, upgrade

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    upgrade(url)
    return url


@pytest.mark.parametrize("port", ["0", "70000"])
def test_bad_port(url: str, port: str) -> None:
    assert refusal(run("dashboard", "--db", url, "--port", port)) == (
        f"--port {port} is not a port number (1-65535)"
    )


def test_port_in_use(url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert refusal(run("dashboard", "--db", url, "--port", str(port))) == (
            f"cannot serve on 127.0.0.1:{port}: the address is in use"
        )


def test_missing_database_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    assert refusal(run("dashboard", "--db", f"sqlite:///{path}")) == (
        f"database sqlite:///{path} does not exist: run `poolstride db upgrade`"
    )
    assert not path.exists()


def test_database_without_schema(empty_db_url: str) -> None:
    shown = display_url(normalize_url(empty_db_url))
    # an SQLite file that is not there yet is not created (and so has no schema either)
    problem = "does not exist" if empty_db_url.startswith("sqlite") else "has no poolstride schema"
    assert refusal(run("dashboard", "--db", empty_db_url)) == (
        f"database {shown} {problem}: run `poolstride db upgrade`"
    )


def test_unreachable_database() -> None:
    # the input is fine, the server is not there: status 1, as for every command
    line = refusal(run("dashboard", "--db", "postgresql://nobody@127.0.0.1:9/none"), code=1)
    assert line == (
        "database postgresql+psycopg://nobody@127.0.0.1:9/none: connection failed: connection "
        'to server at "127.0.0.1", port 9 failed: Connection refused'
    )


def test_unsupported_url() -> None:
    assert refusal(run("dashboard", "--db", "mysql://x/y")) == (
        "database URL 'mysql://x/y': only sqlite:/// and postgresql:// are supported"
    )


def test_the_app_is_the_dashboard_packages_even_when_a_tests_folder_shadows_it() -> None:
    # tests/ is on sys.path here, and tests/dashboard is a folder without __init__.py: the
    # name `dashboard` alone may resolve to it, the module dashboard.app never does
    assert str(ROOT / "tests") in sys.path
    assert app_path() == ROOT / "dashboard" / "app.py"
    command = streamlit_command(8502, "0.0.0.0")
    assert command[:5] == [
        sys.executable,
        "-m",
        "dashboard.serve",
        "run",
        str(ROOT / "dashboard" / "app.py"),
    ]
    assert command[command.index("--server.port") + 1] == "8502"
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
