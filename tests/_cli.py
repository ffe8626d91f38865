"""Run ``poolstride`` in-process through ``main``, its one-line error path included."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import CliRunner

from search.cli import main


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
