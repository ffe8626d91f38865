"""Kills a dead worker's Ray processes: ``python -m workers._reaper TEMP_DIR``.

A worker that starts a private Ray instance starts this process beside it. When the worker dies
without shutting Ray down (``kill -9``), Ray's agents can outlive it for minutes; this process
notices that its parent is gone, kills every process whose environment carries the mark
``RAY_TMPDIR=TEMP_DIR`` (the private folder the worker set before starting Ray, so no other
Ray instance on the machine matches) and every descendant of one (the raylet starts its
dashboard and runtime-env agents without the ``RAY_*`` variables), and removes the temp
folder. Linux only (it reads ``/proc``); elsewhere it just waits for its parent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path


def marked(mark: bytes) -> list[int]:
    """Pids of live processes whose environment contains ``mark`` (this one excluded)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def with_descendants(pids: list[int]) -> list[int]:
    """``pids`` and every live process descended from one of them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid ...": the command may hold spaces and parentheses
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def reap(mark: bytes, *, patience_s: float = 30.0) -> None:
    """SIGKILL the marked processes until none has been seen for three seconds, for at most
    ``patience_s``. Ray restarts nothing once its GCS died, but an agent its raylet was
    starting can appear after the first sweep (measured on a loaded 2-core machine: two agents
    outlived a 2-second sweep), so one empty look is not enough."""
    deadline, quiet = time.monotonic() + patience_s, 0
    while quiet < 15 and time.monotonic() < deadline:
        # with their children: the raylet starts its dashboard and runtime-env agents with an
        # environment of their own, without the mark
        pids = with_descendants(marked(mark))
        quiet = 0 if pids else quiet + 1
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    temp_dir = argv[1]
    parent = os.getppid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while os.getppid() == parent:
        time.sleep(0.5)
    if Path("/proc").is_dir():
        reap(f"RAY_TMPDIR={temp_dir}".encode())
    shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
