"""An installed wheel (no source tree) creates and reads a database: the migrations ship in it.

The wheel is built from a copy of the repository, installed without dependencies into a fresh
virtual environment that sees this one's packages through a plain ``.pth`` path (which does
not run the editable install's finder there), and its ``poolstride`` command runs from a
folder outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from search.store import head_revision
from search.store._schema import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[2]
# what a build needs and nothing a developer's tree may hold (caches, databases, old builds)
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "*.db*", "*-artifacts"
)

pytestmark = pytest.mark.slow


def test_the_installed_wheel_upgrades_and_reads_a_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "POOLSTRIDE"))}
    src, dist, venv, work = (tmp_path / d for d in ("src", "dist", "venv", "work"))
    shutil.copytree(ROOT, src, ignore=IGNORED)
    work.mkdir()

    def run(*args: str | Path) -> str:
        done = subprocess.run(
            [str(a) for a in args], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done.stdout

    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        dist,
        src,
    )
    (wheel,) = dist.glob("poolstride-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = "search/store/migrations/"
    assert {f"{migrations}env.py", f"{migrations}script.py.mako"} <= names
    # every migration of the source tree, from the first to the head, and nothing else
    shipped = {Path(n).name for n in names if n.startswith(f"{migrations}versions/")}
    assert shipped == {p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py")}
    assert min(shipped).startswith("0001_") and max(shipped).startswith(f"{head_revision()}_")
    assert not [n for n in names if n.startswith(("alembic/", "tests/"))]

    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "poolstride_deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    # --ignore-installed: this environment's editable poolstride is visible, and is not ours
    # to replace
    run(
        python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel
    )
    where = run(python, "-c", "import search.store; print(search.store.__file__)").strip()
    assert Path(where) == site / "search" / "store" / "__init__.py"

    poolstride = venv / "bin" / "poolstride"
    url = f"sqlite:///{work / 'w.db'}"
    upgraded = run(poolstride, "db", "upgrade", "--db", url)
    assert upgraded == f"database {url} is at revision {head_revision()} (head)\n"
    space = run(poolstride, "space").splitlines()
    assert (space[0], space[-1]) == ("input 1x28x28, 3 stages", "46,656 distinct architectures")
    assert run(poolstride, "db", "current", "--db", url) == f"{head_revision()} (head)\n"
