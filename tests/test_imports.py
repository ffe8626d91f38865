"""The search side stays light: importing it loads neither torch nor ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LIGHT = [
    "search",
    "search.store",
    "search.study",
    "search.analysis",
    "search.pareto",
    "search.query",
    "search.cli",
]


@pytest.mark.parametrize("module", LIGHT)
def test_importing_loads_no_torch_and_no_ray(module: str) -> None:
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'ray'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout) == []


def test_the_check_sees_a_heavy_import() -> None:
    # the same probe on a module that does import torch reports it
    code = "import json, sys, workers.model; print(json.dumps('torch' in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout) is True


def test_search_re_exports_load_on_first_use() -> None:
    # `import search.space` must not pull Optuna in through the package's re-exports, and
    # every re-exported name still resolves, by attribute and by `from search import *`
    code = (
        "import json, sys, search.space; light = 'optuna' not in sys.modules; "
        "import search; [getattr(search, n) for n in search.__all__]; "
        "ns = {}; exec('from search import *', ns); "
        "print(json.dumps([light, sorted(set(search.__all__) - set(ns)), "
        "'optuna' in sys.modules, hasattr(search, 'no_such_name')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    # light before the names were read; Optuna loaded once SAMPLERS and JobConfig were
    assert json.loads(out.stdout) == [True, [], True, False]
