"""`poolstride space` and `poolstride arch cost`, and `python -m search.cli` as a whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import refusal, run, run_installed
from _golden import GOLDEN

from search.cost import arch_cost
from search.space import ArchSpec

ONE_STAGE = {"stages": [{"downsample": "max", "kernel": 3, "skip": "none"}]}


def test_space_json_lists_choices_per_stage_and_size() -> None:
    res = run(
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
    assert res.code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["stages"] == [
        {
            "downsample": ["max", "strided"],
            "kernel": [3, 5],
            "skip": ["none", "proj", "pool"],
            "width": [8],
            "depth": [1],
        },
        {
            "downsample": ["max", "avg", "strided", "conv"],
            "kernel": [3, 5],
            "skip": ["none", "proj", "pool"],
            "width": [16, 32],
            "depth": [1],
        },
    ]
    assert data["size"] == (2 * 2 * 3) * (4 * 2 * 3 * 2)


def test_space_reads_toml_and_flags_override_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text('stages = 2\ninput = "3x32x32"\nkernel = [7]\n')
    data = json.loads(run("space", "--json", "--config", "s.toml", "--skip", "none").stdout)
    assert data["input"] == "3x32x32"
    assert [s["kernel"] for s in data["stages"]] == [[7], [7]]
    assert [s["skip"] for s in data["stages"]] == [["none"], ["none"]]
    assert data["size"] == 16
    text = run("space", "--config", "s.toml")
    assert (text.code, text.stderr) == (0, "")
    assert text.stdout.splitlines() == [
        "input 3x32x32, 2 stages",
        "  s1: downsample=max|avg|strided|conv  kernel=7  skip=none|proj|pool  width=32  depth=1",
        "  s2: downsample=max|avg|strided|conv  kernel=7  skip=none|proj|pool  width=64  depth=1",
        "144 distinct architectures",
    ]


def test_arch_cost_json_and_measure_agree(tmp_path: Path) -> None:
    arch = {
        "stages": [
            {"downsample": "strided", "kernel": 5, "skip": "proj", "width": 16},
            {"downsample": "conv", "kernel": 3, "skip": "pool", "width": 24, "depth": 2},
        ]
    }
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    res = run("arch", "cost", f"@{path}", "--input", "3x32x32", "--measure", "--json")
    assert res.code == 0, res.stderr
    out = json.loads(res.stdout)
    expected = arch_cost(ArchSpec.from_dict(arch), input_shape=(3, 32, 32))
    assert out == {
        **expected._asdict(),
        "measured": {"params": expected.params, "flops": expected.flops},
    }
    inline = run("arch", "cost", json.dumps(arch), "--input", "3x32x32", "--json")
    assert json.loads(inline.stdout) == expected._asdict()


def test_arch_cost_text() -> None:
    res = run("arch", "cost", json.dumps(ONE_STAGE), "--input", "1x8x8")
    expected = arch_cost(ArchSpec.from_dict(ONE_STAGE), input_shape=(1, 8, 8))
    assert res.stdout.splitlines() == [f"{k}: {v:,}" for k, v in expected._asdict().items()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("arch", "cost", json.dumps({"stages": ONE_STAGE["stages"] * 6}), "--input", "1x28x28"),
            "stage 6: its input is 1x1, which cannot be downsampled (input 1x28x28 allows at "
            "most 5 stages, got 6)",
        ),
        (
            ("arch", "cost", '{"stages": [{"downsample": "max", "kernel": 4, "skip": "none"}]}'),
            "stage 1: kernel 4 must be an odd integer >= 1",
        ),
        (
            ("arch", "cost", "{not json"),
            "architecture is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (
            ("arch", "cost", "@missing.json"),
            "cannot read 'missing.json': No such file or directory",
        ),
        (
            ("arch", "cost", json.dumps(ONE_STAGE), "--input", "1x28"),
            "input shape '1x28' is not CxHxW, e.g. 1x28x28",
        ),
        (
            ("space", "--stages", "7"),
            "stage 6: its input is 1x1, which cannot be downsampled (input 1x28x28 allows at "
            "most 5 stages, got 7)",
        ),
        (("space", "--kernel", "3,4"), "stage 1: kernel 4 must be an odd integer >= 1"),
        (("space", "--override", "s1.kernel"), "--override 's1.kernel' is not sN.KEY=V1,V2"),
        (("space", "--config", "nope.toml"), "config file 'nope.toml' does not exist"),
        (("space", "--bogus"), "No such option '--bogus'."),
        (("frobnicate",), "No such command 'frobnicate'."),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    args: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert refusal(run(*args, env={"POOLSTRIDE_DB": "sqlite:///never-created.db"})) == message
    assert list(tmp_path.iterdir()) == []


def test_python_m_search_cli_is_the_whole_command(tmp_path: Path) -> None:
    # the module entry point registers every command, as the console script does
    res = run_installed("--help", cwd=tmp_path)
    assert (res.code, res.stderr) == (0, "")
    assert _commands(res.stdout) == _commands((GOLDEN / "help-poolstride.txt").read_text())
    assert len(_commands(res.stdout)) == 17
    bad = run_installed("space", "--kernel", "4", cwd=tmp_path)
    assert refusal(bad) == "stage 1: kernel 4 must be an odd integer >= 1"
    assert list(tmp_path.iterdir()) == []


def _commands(help_text: str) -> list[str]:
    listed = help_text.split("Commands:\n", 1)[1].splitlines()
    return [line.split()[0] for line in listed if line.strip()]
