"""``poolstride dashboard`` refuses what it cannot serve before starting Streamlit."""

from __future__ import annotations

import doctest
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

import dashboard._data
import dashboard._ui
from search.cli import cli
from search.store import upgrade


def _refused(*args: str, status: int = 2) -> str:
    result = CliRunner().invoke(cli, ["dashboard", *args])
    assert result.exit_code == status, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("poolstride: error: "), result.output
    return lines[0]


@pytest.mark.parametrize("port", ["0", "70000"])
def test_bad_port(tmp_path: Path, port: str) -> None:
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    upgrade(url)
    assert "is not a port number" in _refused("--db", url, "--port", port)


def test_port_in_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    upgrade(url)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "is in use" in _refused("--db", url, "--port", str(port))


def test_missing_database_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    assert "does not exist" in _refused("--db", f"sqlite:///{path}")
    assert not path.exists()


def test_database_without_schema(empty_db_url: str) -> None:
    assert "poolstride db upgrade" in _refused("--db", empty_db_url)


def test_unreachable_database() -> None:
    # the input is fine, the server is not there: status 1, as for every command
    line = _refused("--db", "postgresql://nobody@127.0.0.1:9/none", status=1)
    assert "127.0.0.1" in line and "9" in line


def test_unsupported_url() -> None:
    assert "only sqlite:/// and postgresql://" in _refused("--db", "mysql://x/y")


@pytest.mark.parametrize("module", [dashboard._data, dashboard._ui])
def test_doctests(module: object) -> None:
    # dashboard/ is not in pytest's doctest paths: collecting it would run the page scripts
    failed, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried and not failed
