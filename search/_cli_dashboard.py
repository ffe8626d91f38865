"""``poolstride dashboard``: start the Streamlit app on a database.

Registered on :data:`search.cli.cli` by the import at the bottom of ``search/cli.py``. The app
lives in ``dashboard/app.py`` beside this package; it gets the database through
``$POOLSTRIDE_DB`` in the Streamlit process's environment.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

import click

from search.cli import _database, cli, db_option, fail
from search.store import DB_ENV_VAR, Store, display_url

__all__ = ["APP", "dashboard", "streamlit_command"]

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def streamlit_command(port: int, host: str) -> list[str]:
    """The ``streamlit run`` command line that serves the app on ``host:port``.

    Example:
        >>> cmd = streamlit_command(8502, "0.0.0.0")
        >>> cmd[cmd.index("--server.port") + 1], cmd[cmd.index("--server.address") + 1]
        ('8502', '0.0.0.0')
    """
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # The app only reads; nothing should reload it when files change.
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        # viewers of a study have no use for Streamlit's deploy and developer menus
        "--client.toolbarMode",
        "viewer",
    ]


def _check_port(host: str, port: int) -> None:
    """Fail with one line if ``host:port`` cannot be bound, before Streamlit says it in ten."""
    if not 1 <= port <= 65535:
        fail(f"--port {port} is not a port number (1-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        fail(f"--host {host!r}: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"({exc.strerror})"
            fail(f"cannot serve on {host}:{port}: the address {reason}")


@cli.command()
@db_option
@click.option("--port", type=int, default=8501, show_default=True, help="Port to serve on.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (default: this machine only; 0.0.0.0 serves every interface).",
)
def dashboard(db: str | None, port: int, host: str) -> None:
    """Serve the dashboard: queue, Pareto fronts, stage analysis, trials and architectures.

    The database is opened read-only. Ctrl-C stops it.
    """
    _check_port(host, port)
    if not APP.is_file():
        fail(f"the dashboard app is missing from {APP}")
    # Refuse a missing, out-of-date (status 2) or unreachable (status 1, as every command)
    # database here: a dashboard started on it would only show the same error in the browser.
    with _database(db) as url:
        Store.open(url).close()
    click.echo(
        f"dashboard on http://{host}:{port} for {display_url(url)} (Ctrl-C stops it)", err=True
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Become Streamlit rather than wrap it: signals (Ctrl-C, a service manager's SIGTERM) then
    # reach the server directly and no orphaned child is left behind.
    os.execve(sys.executable, streamlit_command(port, host), {**os.environ, DB_ENV_VAR: url})
