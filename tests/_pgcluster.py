"""A private PostgreSQL cluster that a test may stop and start: outages without disturbing others.

The shared server (``pg_server`` in conftest.py) serves every other test, so an outage test
brings up its own cluster with ``initdb`` in a fresh folder under /tmp, listening on a free port
of 127.0.0.1. PostgreSQL refuses to run as root, so under root its programs run as the
``postgres`` user (through ``runuser``), which owns the folder; pytest's ``tmp_path`` is not
reachable by that user, hence /tmp.

Example:
    >>> cluster = PgCluster.create()  # doctest: +SKIP
    >>> cluster.outage(6).join()  # doctest: +SKIP
    >>> cluster.close()  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["PgCluster", "find_bindir"]

OWNER = "postgres"
# a throwaway cluster: durability is of no use, and fsync makes initdb and commits slow
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def find_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb``, ``pg_ctl``), or ``None``.

    ``pg_config --bindir`` first; a client-only ``pg_config`` names a folder without ``initdb``,
    so Debian's /usr/lib/postgresql/<version>/bin (newest first) are tried next. Under root,
    ``runuser`` and the ``postgres`` user are needed too.

    Example:
        >>> find_bindir()  # doctest: +SKIP
        PosixPath('/usr/lib/postgresql/15/bin')
    """
    if os.geteuid() == 0 and not (shutil.which("runuser") and _has_owner()):
        return None
    candidates = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if found.returncode == 0:
            candidates.append(found.stdout.strip())
    versions = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in map(Path, candidates):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def _has_owner() -> bool:
    try:
        pwd.getpwnam(OWNER)
    except KeyError:
        return False
    return True


class PgCluster:
    """One PostgreSQL cluster in its own folder, on its own port, with trust authentication.

    Args:
        bindir: Where ``initdb`` and ``pg_ctl`` are (see :func:`find_bindir`).
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ps-pgcluster-", dir="/tmp"))
        if os.geteuid() == 0:
            shutil.chown(self.root, user=OWNER)
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._restart: threading.Thread | None = None

    @classmethod
    def create(cls) -> PgCluster:
        """A new cluster, initialised and started (``RuntimeError`` if either fails)."""
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server programs (initdb, pg_ctl) were not found")
        cluster = cls(bindir)
        try:
            cluster._initdb()
            cluster.start()
        except BaseException:
            cluster.close()
            raise
        return cluster

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start", "-l", str(self.root / "server.log"))

    def stop(self) -> None:
        """Stop the server at once (fast mode: open sessions are ended) and wait until it is."""
        self._pg_ctl("stop", "-m", "fast")

    def outage(self, seconds: float) -> threading.Thread:
        """Stop the server now and start it again ``seconds`` later; join the returned thread.

        Example:
            >>> cluster.outage(6).join()  # doctest: +SKIP
        """
        self.stop()

        def restart() -> None:
            time.sleep(seconds)
            self.start()

        self._restart = threading.Thread(target=restart, name="pgcluster-restart", daemon=True)
        self._restart.start()
        return self._restart

    def close(self) -> None:
        """Stop the server if it runs (after a pending restart) and remove its folder."""
        if self._restart is not None:
            self._restart.join()
        if self.data.is_dir() and (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.root}'"}
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", *args)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", OWNER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{done.stderr}{tail}")


def _free_port() -> int:
    # the port is free now; nothing else on this machine races for a fresh ephemeral one
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
