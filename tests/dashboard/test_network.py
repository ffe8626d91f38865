"""The Architecture page's computations: parts and their costs, the class count, the table, the
diagram and the diff, checked against the search's own cost model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dashboard.network import (
    class_count,
    diagram,
    diff_table,
    parts,
    parts_table,
    stage_ops,
)
from search.config import JobConfig
from search.cost import arch_cost
from search.datasets import DatasetFacts
from search.space import ArchSpec
from search.store import JobInfo, Store, upgrade

ROW = {
    "trial": 3,
    "state": "complete",
    "s1.downsample": "strided",
    "s1.kernel": 7,
    "s1.skip": "proj",
    "s1.width": 8,
    "s1.depth": 1,
    "s2.downsample": "max",
    "s2.kernel": 3,
    "s2.skip": "pool",
    "s2.width": 16,
    "s2.depth": 2,
    "val_acc": 0.36111,
    "test_acc": 0.33426,
    "flops": 122176,
    "params": 4834,
    "latency_ms": None,
    "train_s": 0.25,
    "activation_bytes": 10344,
    "receptive_field": 13,
    "latency_rel": None,
}
DIGITS = (1, 8, 8)


def _job(tmp_path: Path, dataset: str, **extra: object) -> JobInfo:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade(url)
    space = {"stages": 2, "widths": [8, 16], "input": "1x8x8"}
    config = {"dataset": dataset, "trials": 2, "epochs": 1, "space": space, **extra}
    with Store.open(url) as store:
        return store.submit(JobConfig.from_mapping(config))


def test_the_parts_cost_what_the_search_computed() -> None:
    arch = ArchSpec.from_row(ROW)
    network = parts(arch, DIGITS, 10)
    cost = arch_cost(arch, input_shape=DIGITS, num_classes=10)
    assert [p.name for p in network] == ["stem", "s1", "s2", "head"]
    assert sum(p.params or 0 for p in network) == cost.params
    assert sum(p.flops or 0 for p in network) == cost.flops
    assert [p.output for p in network] == ["8×8×8", "8×4×4", "16×2×2", "10×1×1"]
    assert network[2].ops == (
        "conv 3×3",
        "conv 3×3",
        "max-pool 2×2",
        "shortcut: avg-pool 2×2 + zero-pad channels",
    )


def test_an_unknown_class_count_leaves_the_head_blank() -> None:
    known, unknown = (
        parts(ArchSpec.from_row(ROW), DIGITS, 10),
        parts(ArchSpec.from_row(ROW), DIGITS, None),
    )
    assert unknown[:-1] == known[:-1]  # the body does not depend on the classes
    head = unknown[-1]
    assert (head.params, head.flops, head.output) == (None, None, "?×1×1")
    table = parts_table(unknown)
    assert table.loc[3, ["params", "FLOPs", "output"]].tolist() == ["-", "-", "?×1×1"]


def test_the_table_writes_counts_with_thousands_separators() -> None:
    network = parts(ArchSpec.from_row(ROW), DIGITS, 10)
    table = parts_table(network)
    assert table.columns.tolist() == [
        "part",
        "output",
        "params",
        "FLOPs",
        "receptive field",
        "downsample",
        "kernel",
        "skip",
        "ops",
    ]
    assert table["FLOPs"].tolist() == [f"{p.flops:,}" for p in network]
    assert table["params"].tolist() == [f"{p.params:,}" for p in network]
    # the 7×7 conv /2 (2·8·8·49·4·4 = 100,352) and the 1×1 shortcut (2·8·8·4·4 = 2,048)
    assert table.loc[1, "FLOPs"] == "102,400"
    assert table.loc[1, "ops"] == "conv 7×7 /2 → shortcut: 1×1 conv /2 + BN"
    assert table.loc[0, ["downsample", "kernel", "skip"]].tolist() == ["", "", ""]


def test_the_diagram_chains_the_parts_with_their_costs() -> None:
    network = parts(ArchSpec.from_row(ROW), DIGITS, 10)
    dot = diagram(network, DIGITS)
    assert dot.splitlines()[-1] == "input -> stem -> s1 -> s2 -> head; }"
    assert 'input [label="input\\n1×8×8", shape=plaintext];' in dot
    s1 = network[1]
    assert (
        f's1 [label="s1\\nconv 7×7 /2\\nshortcut: 1×1 conv /2 + BN\\nout 8×4×4'
        f'\\n{s1.params:,} params · {s1.flops:,} FLOPs"];'
    ) in dot
    assert "? classes" not in dot and "- params · - FLOPs" in diagram(
        parts(ArchSpec.from_row(ROW), DIGITS, None), DIGITS
    )


def test_the_diff_lists_every_choice_and_metric_as_text() -> None:
    other = {**ROW, "trial": 5, "s2.skip": "none", "flops": 98304, "val_acc": 0.36112}
    diff = diff_table(ROW, other).set_index("key")
    assert diff.index.tolist()[:10] == list(ArchSpec.from_row(ROW).params())
    assert diff.loc["s2.skip"].tolist() == ["pool", "none", True]
    assert diff.loc["flops"].tolist() == ["122,176", "98,304", True]
    # shown to four places, compared in full
    assert diff.loc["val_acc"].tolist() == ["0.3611", "0.3611", True]
    assert diff.loc["latency_ms"].tolist() == ["-", "-", False]
    assert diff["differs"].sum() == 3


def test_stage_ops_follow_the_model() -> None:
    stage = {"downsample": "conv", "kernel": 5, "skip": "none", "width": 8, "depth": 2}
    assert stage_ops(ArchSpec.from_dict({"stages": [stage]}).stages[0]) == [
        "conv 5×5",
        "conv 5×5",
        "conv 5×5 /2",
    ]


def test_class_count_is_the_recorded_one_first(tmp_path: Path) -> None:
    job = _job(tmp_path, "digits")
    assert job.dataset_facts is None and class_count(job) == 10  # the name fixes it
    recorded = replace(job, dataset_facts=DatasetFacts(7, DIGITS, (0.5,), (0.2,)))
    assert class_count(recorded) == 7


@pytest.mark.parametrize("dataset", ["npz", "imagefolder"])
def test_class_count_is_unknown_where_nothing_says_it(tmp_path: Path, dataset: str) -> None:
    job = _job(tmp_path, dataset, data_dir=str(tmp_path / "data"))
    assert class_count(job) is None
    assert class_count(replace(job, dataset_facts=DatasetFacts(3, DIGITS, (0.5,), (0.2,)))) == 3
