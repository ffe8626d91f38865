"""bench/sampler.py's smoke run: every sampler searched, one line each, the ratio last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from search.study import SAMPLERS

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sampler.py"


@pytest.mark.slow
def test_the_sampler_bench_runs_every_sampler_and_ends_with_the_default_s_ratio() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    rows = {
        words[0]: words[1:]
        for words in map(str.split, out)
        if words and words[0] in SAMPLERS and words[1] != "seed"
    }
    # per sampler its summary row (mean, std, min, max, repeats, vs_random, ratio_std), and
    # random search's ratio to itself is 1
    assert all(len(rows[name]) == 7 for name in SAMPLERS)
    assert rows["random"][5] == "1.0000"
    # each search of the two seeds on a line of its own
    assert sum(line.startswith(f"{name} seed ") for name in SAMPLERS for line in out) == 8
    assert re.fullmatch(r"sampler_hv_vs_random: \d+\.\d{3}", out[-1])
