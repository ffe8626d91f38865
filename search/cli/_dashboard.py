"""``poolstride dashboard``: serve the Streamlit app on a database.

The app is the installed module :data:`APP_MODULE`, found by the import system (in a checkout
and a wheel alike); it gets the database through ``$POOLSTRIDE_DB`` in the Streamlit process's
environment.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import sys
from pathlib import Path

import click

from search.cli._common import database, db_option, fail
from search.store import DB_ENV_VAR, Store, display_url

__all__ = ["APP_MODULE", "app_path", "dashboard", "streamlit_command"]

APP_MODULE = "dashboard.app"


def app_path() -> Path:
    """The file of :data:`APP_MODULE`, the script ``streamlit run`` serves.

    Found through the import system rather than beside this file, so that it is right wherever
    the ``dashboard`` package is installed.

    Raises:
        FileNotFoundError: the module is not installed.

    Example:
        >>> app_path().name
        'app.py'
    """
    try:
        spec = importlib.util.find_spec(APP_MODULE)
    except ModuleNotFoundError:
        spec = None
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the dashboard app {APP_MODULE} is not installed")
    return Path(spec.origin)


def streamlit_command(port: int, host: str) -> list[str]:
    """The command line that serves the app on ``host:port``: ``python -m dashboard.serve
    run …`` takes ``streamlit run``'s arguments and warms the imports and the first reads
    before Streamlit starts, so the first page a user opens is not the slow one.

    Example:
        >>> cmd = streamlit_command(8502, "0.0.0.0")
        >>> cmd[cmd.index("--server.port") + 1], cmd[cmd.index("--server.address") + 1]
        ('8502', '0.0.0.0')
    """
    return [
        sys.executable,
        "-m",
        "dashboard.serve",
        "run",
        str(app_path()),
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


@click.command()
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
    try:
        app_path()
    except FileNotFoundError as exc:
        fail(str(exc))
    # Refuse a missing, out-of-date (status 2) or unreachable (status 1, as every command)
    # database here: a dashboard started on it would only show the same error in the browser.
    with database(db) as url:
        Store.open(url, read_only=True).close()
    click.echo(
        f"dashboard on http://{host}:{port} for {display_url(url)} (Ctrl-C stops it)", err=True
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Become Streamlit rather than wrap it: signals (Ctrl-C, a service manager's SIGTERM) then
    # reach the server directly and no orphaned child is left behind.
    os.execve(sys.executable, streamlit_command(port, host), {**os.environ, DB_ENV_VAR: url})
