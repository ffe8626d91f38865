"""Run ``poolstride`` in-process through ``main`` (its one-line error path included), or as the
installed command in a child process, and read a refusal's one line."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from search.cli import main

ERROR = "poolstride: error: "


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``poolstride ARGS`` with ``env`` changes; returns the exit status and both streams."""
    code = 0
    with CliRunner().isolation(env=env) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue().decode(), err.getvalue().decode())


def run_installed(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """``python -m search.cli ARGS`` in a child process, with ``env`` added to this one's."""
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def refusal(result: Result, code: int = 2) -> str:
    """The message of a command that refused: it exited ``code``, printed nothing on stdout and
    one ``poolstride: error:`` line on stderr; returns that line without the prefix."""
    assert result.code == code, result
    assert result.stdout == "", result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), result.stderr
    return lines[0].removeprefix(ERROR)
