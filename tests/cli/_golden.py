"""Every command's ``--help`` and ``--json`` output on a known database, normalised.

The test compares them with the files in ``golden/``, captured before the CLI was reshaped, so a
refactoring that changes a flag, a help line or a JSON field fails. Help text is rendered at a
fixed terminal width; ids that differ per run (times, worker ids, the temporary database path)
are replaced by placeholders. Regenerate after an intended change with

    .venv/bin/python tests/cli/_golden.py --write
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
# the repository first, so tests/search (a folder of tests) does not shadow the package
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent), str(HERE)]

from _cli import run  # noqa: E402
from _known import fill  # noqa: E402

from search.store import Store, upgrade  # noqa: E402

HELP = [
    (),
    ("space",),
    ("arch",),
    ("arch", "cost"),
    ("db",),
    ("db", "upgrade"),
    ("db", "current"),
    ("submit",),
    ("jobs",),
    ("status",),
    ("cancel",),
    ("workers",),
    ("worker",),
    ("run",),
    ("data",),
    ("data", "fetch"),
    ("pareto",),
    ("trials",),
    ("analyze",),
    ("report",),
    ("export",),
    ("dashboard",),
]
ARCH = '{"stages": [{"downsample": "strided", "kernel": 5, "skip": "proj", "width": 8}]}'
# name -> arguments; every one prints one JSON document on stdout
JSON = {
    "space": ("space", "--json"),
    "space-flags": (
        "space",
        "--input",
        "3x32x32",
        "--stages",
        "2",
        "--widths",
        "8/16,32",
        "--kernel",
        "3,5",
        "--override",
        "s1.downsample=max,strided",
        "--json",
    ),
    "arch-cost": ("arch", "cost", ARCH, "--input", "1x8x8", "--measure", "--json"),
    "db-current": ("db", "current", "--json"),
    "submit": (
        "submit",
        "--dataset",
        "digits",
        "--trials",
        "3",
        "--epochs",
        "1",
        "--stages",
        "2",
        "--widths",
        "8,16",
        "--seed",
        "5",
        "--json",
    ),
    "jobs": ("jobs", "--json"),
    "status": ("status", "1", "--json"),
    "cancel": ("cancel", "2", "--json"),
    "workers": ("workers", "--json"),
    "pareto": ("pareto", "1", "--format", "json"),
    "pareto-params": ("pareto", "1", "--objectives", "val_acc,params", "--format", "json"),
    "trials": (
        "trials",
        "1",
        "--where",
        "s1.downsample!=avg",
        "--sort",
        "-val_acc",
        "--limit",
        "4",
        "--format",
        "json",
    ),
    "analyze": ("analyze", "1", "--format", "json"),
}

# a migration moves the head on; the worker id is random; a worker row names this process
_PLACEHOLDER = {
    "worker_id": "worker",
    "current": "revision",
    "head": "revision",
    "hostname": "host",
    "pid": "pid",
}
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00| UTC)?")


def normalise(value: Any, db: str) -> Any:
    """Placeholders for what differs per run, recursively through JSON values."""
    if isinstance(value, dict):
        return {
            k: (f"<{_PLACEHOLDER[k]}>" if k in _PLACEHOLDER and v else normalise(v, db))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v, db) for v in value]
    if isinstance(value, str):
        return _TIME.sub("<time>", value.replace(db, "<db>"))
    return value


def capture() -> dict[str, str]:
    """File name -> normalised output, for every ``--help`` and every JSON command."""
    out: dict[str, str] = {}
    env = {"COLUMNS": "100", "POOLSTRIDE_DB": None}
    for args in HELP:
        result = run(*args, "--help", env=env)
        assert result.code == 0, (args, result.stderr)
        out[f"help-{'-'.join(args) or 'poolstride'}.txt"] = result.stdout
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/golden.db"
        upgrade(db)
        with Store.open(db) as store:
            fill(store)
            # a lease longer than any capture, so the worker reads idle, never lost
            store.register_worker("golden-worker", lease_seconds=86400)
        env = {**env, "POOLSTRIDE_DB": db}
        for name, args in JSON.items():
            result = run(*args, env=env)
            assert result.code == 0, (args, result.stderr)
            data = normalise(json.loads(result.stdout), tmp)
            out[f"json-{name}.json"] = json.dumps(data, indent=2) + "\n"
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: tests/cli/_golden.py --write")
    GOLDEN.mkdir(exist_ok=True)
    for old in GOLDEN.iterdir():
        old.unlink()
    for name, text in capture().items():
        (GOLDEN / name).write_text(text)
    print(f"wrote {len(list(GOLDEN.iterdir()))} files to {GOLDEN}")
