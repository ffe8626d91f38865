"""Environment variables: importing poolstride sets none; Ray and Tune get theirs for the block."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workers._reaper import marked
from workers.ray_session import ray_session, tune_settings

# Imports every module of the packages named in argv[1] except the pages named in argv[2],
# then imports them all again with everything else they load already loaded: only poolstride's
# own module code runs the second time, so what it does to os.environ is told apart from what
# its dependencies do at import (Ray and Streamlit set variables of their own).
_PROBE = """
import importlib, json, os, pkgutil, sys

packages, pages = json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))

def modules():
    names = []
    for package in packages:
        root = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
    return [n for n in names if not n.startswith(pages)]

before = dict(os.environ)
names = modules()
for name in names:
    importlib.import_module(name)
for name in [m for m in sys.modules if m.split(".")[0] in packages]:
    del sys.modules[name]
os.environ.clear()
os.environ.update(before)
for name in names:
    importlib.import_module(name)
after = dict(os.environ)
print(json.dumps({
    "modules": names,
    "changed": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
}))
"""
# the dashboard's pages run Streamlit calls when imported
_PAGES = ["dashboard.app", "dashboard.views"]


def _probe(packages: list[str], pages: list[str], **kw: Any) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(packages), json.dumps(pages)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        **kw,
    )
    found: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.slow
def test_importing_any_poolstride_module_sets_no_environment_variable() -> None:
    found = _probe(["search", "workers", "dashboard"], _PAGES)
    assert found["changed"] == []
    # the walk reached into the packages and left the pages out
    names = set(found["modules"])
    assert {"search.store", "search.study", "workers.runner", "dashboard._data"} <= names
    assert "dashboard.app" not in names


def test_the_probe_sees_a_module_that_sets_a_variable(tmp_path: Path) -> None:
    # the same second pass on a package that sets a variable when imported reports it
    (tmp_path / "probe_pkg").mkdir()
    (tmp_path / "probe_pkg" / "__init__.py").write_text(
        "import os\nos.environ.setdefault('PS_PROBE_SET', '1')\n"
    )
    (tmp_path / "probe_pkg" / "page.py").write_text("raise AssertionError('a page')\n")
    env = {k: v for k, v in os.environ.items() if k != "PS_PROBE_SET"}
    found = _probe(["probe_pkg"], ["probe_pkg.page"], cwd=tmp_path, env=env)
    assert found == {"modules": ["probe_pkg"], "changed": ["PS_PROBE_SET"]}


def test_tune_settings_hold_for_the_block_and_a_users_own_setting_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "1")
    with tune_settings():
        inside = {
            k: os.environ.get(k)
            for k in (
                "TUNE_DISABLE_SIGINT_HANDLER",
                "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
                "RAY_AIR_NEW_OUTPUT",
            )
        }
    assert inside == {
        "TUNE_DISABLE_SIGINT_HANDLER": "1",
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
        "RAY_AIR_NEW_OUTPUT": "1",
    }
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "1"


@pytest.mark.slow
def test_ray_session_sets_rays_variables_before_init_and_restores_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", "/nonexistent-user-setting")
    assert not ray.is_initialized()
    with ray_session(num_cpus=1):
        temp_dir = os.environ["RAY_TMPDIR"]
        inside = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")}
        # set before ray.init: the servers it started carry them too
        started = _environments(f"RAY_TMPDIR={temp_dir}".encode())
    assert inside == {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    assert sorted(started) == ["gcs_server", "raylet"]
    assert all(b"RAY_USAGE_STATS_ENABLED=0" in env for env in started.values())
    assert temp_dir.startswith("/tmp/ps-ray-") and not os.path.exists(temp_dir)
    assert not ray.is_initialized()
    assert "RAY_USAGE_STATS_ENABLED" not in os.environ and "RAY_AUTH_MODE" not in os.environ
    assert os.environ["RAY_TMPDIR"] == "/nonexistent-user-setting"


def _environments(mark: bytes) -> dict[str, list[bytes]]:
    """The environments of Ray's GCS and raylet processes that carry ``mark``, by name.

    Only these two: ``ray.init`` starts them itself and they keep their title, while Ray's
    Python processes retitle themselves, which can overwrite what ``/proc`` shows of their
    environment.
    """
    found = {}
    for pid in marked(mark):
        with contextlib.suppress(OSError):  # it may have exited since
            name = Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
            if name in ("gcs_server", "raylet"):
                found[name] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return found
