"""`poolstride space` and `poolstride arch cost`, run as the installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.cost import arch_cost
from search.space import ArchSpec

POOLSTRIDE = [sys.executable, "-m", "search.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POOLSTRIDE_DB": "sqlite:///never-created.db"}
    return subprocess.run(
        [*POOLSTRIDE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def assert_bad_input(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("poolstride: error: ") and fragment in lines[0], lines[0]


def test_space_json_lists_choices_per_stage_and_size():
    proc = run(
        "space",
        "--json",
        "--stages",
        "2",
        "--kernel",
        "3,5",
        "--widths",
        "8,16/32",
        "--override",
        "s1.downsample=max,strided",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stages"][0] == {
        "downsample": ["max", "strided"],
        "kernel": [3, 5],
        "skip": ["none", "proj", "pool"],
        "width": [8],
        "depth": [1],
    }
    assert data["stages"][1]["width"] == [16, 32]
    assert data["size"] == (2 * 2 * 3) * (4 * 2 * 3 * 2)


def test_space_reads_toml_and_flags_override_it(tmp_path):
    (tmp_path / "s.toml").write_text('stages = 2\ninput = "3x32x32"\nkernel = [7]\n')
    proc = run("space", "--json", "--config", "s.toml", "--skip", "none", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert data["input"] == "3x32x32"
    assert [s["kernel"] for s in data["stages"]] == [[7], [7]]
    assert [s["skip"] for s in data["stages"]] == [["none"], ["none"]]
    assert data["size"] == 16
    text = run("space", "--config", "s.toml", cwd=tmp_path)
    assert text.returncode == 0 and "144 distinct architectures" in text.stdout


def test_arch_cost_json_and_measure_agree(tmp_path):
    arch = {
        "stages": [
            {"downsample": "strided", "kernel": 5, "skip": "proj", "width": 16},
            {"downsample": "conv", "kernel": 3, "skip": "pool", "width": 24, "depth": 2},
        ]
    }
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    proc = run("arch", "cost", f"@{path}", "--input", "3x32x32", "--measure", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    expected = arch_cost(ArchSpec.from_dict(arch), input_shape=(3, 32, 32))
    assert {k: out[k] for k in expected._fields} == expected._asdict()
    assert out["measured"] == {"params": expected.params, "flops": expected.flops}
    inline = run("arch", "cost", json.dumps(arch), "--input", "3x32x32", "--json")
    assert json.loads(inline.stdout)["flops"] == expected.flops


def test_six_stages_on_28x28_exits_2_with_one_line():
    arch = {"stages": [{"downsample": "max", "kernel": 3, "skip": "none"}] * 6}
    assert_bad_input(
        run("arch", "cost", json.dumps(arch), "--input", "1x28x28"), "stage 6: its input is 1x1"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ("arch", "cost", '{"stages": [{"downsample": "max", "kernel": 4, "skip": "none"}]}'),
            "stage 1: kernel 4",
        ),
        (("arch", "cost", "{not json"), "not valid JSON"),
        (("arch", "cost", "@missing.json"), "cannot read 'missing.json'"),
        (
            (
                "arch",
                "cost",
                '{"stages": [{"downsample": "max", "kernel": 3, "skip": "none"}]}',
                "--input",
                "1x28",
            ),
            "is not CxHxW",
        ),
        (("space", "--stages", "7"), "stage 6: its input is 1x1"),
        (("space", "--kernel", "3,4"), "kernel 4"),
        (("space", "--override", "s1.kernel"), "is not sN.KEY=V1,V2"),
        (("space", "--config", "nope.toml"), "does not exist"),
        (("space", "--bogus"), "No such option"),
        (("frobnicate",), "No such command"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args, fragment, tmp_path):
    assert_bad_input(run(*args, cwd=tmp_path), fragment)
    assert list(tmp_path.iterdir()) == []
