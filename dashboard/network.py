"""One candidate's network part by part, computed without Streamlit: its parts and their costs,
the Architecture page's table and Graphviz diagram of them, the same diagram as plain HTML for
the report (which must open without Graphviz), and the diff of two candidates.

The class count, which sets the head's cost, is what the job recorded (:func:`class_count`);
where it is unknown the head's parameters and FLOPs are left blank rather than guessed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dashboard.tables import fmt_int, fmt_value
from search.cost import layer_costs
from search.datasets import dataset_info
from search.space import ArchSpec, StageSpec
from search.store import JobInfo
from search.vocabulary import METRICS

__all__ = [
    "NETWORK_CSS",
    "Part",
    "class_count",
    "diagram",
    "diagram_html",
    "diff_table",
    "parts",
    "parts_table",
    "stage_ops",
]


@dataclass(frozen=True)
class Part:
    """One part of a network (``stem``, ``s1`` … ``sN``, ``head``) and what it costs.

    ``params`` and ``flops`` are ``None`` for a head whose class count is unknown.
    """

    name: str
    ops: tuple[str, ...]
    stage: StageSpec | None
    out_channels: int
    out_size: tuple[int, int]
    params: int | None
    flops: int | None
    receptive_field: int

    @property
    def output(self) -> str:
        """``C×H×W`` of the part's output; ``?×1×1`` for a head of unknown class count."""
        channels = "?" if self.params is None else str(self.out_channels)
        return f"{channels}×{self.out_size[0]}×{self.out_size[1]}"


def class_count(job: JobInfo) -> int | None:
    """The job's class count: what its worker recorded when it loaded the data, else what the
    dataset's name fixes (``digits``: 10), else ``None`` (an ``npz`` or ``imagefolder`` job no
    worker has loaded yet, or one that ran before workers recorded it).

    Example:
        >>> from types import SimpleNamespace
        >>> class_count(SimpleNamespace(dataset_facts=None, config=SimpleNamespace(dataset="npz")))
    """
    if job.dataset_facts is not None:
        return job.dataset_facts.num_classes
    return dataset_info(job.config.dataset).num_classes


def stage_ops(stage: StageSpec) -> list[str]:
    """The operations of one stage in order, as :mod:`workers.model` builds them.

    Example:
        >>> stage_ops(StageSpec("strided", 3, "proj", 16, 2))
        ['conv 3×3', 'conv 3×3 /2', 'shortcut: 1×1 conv /2 + BN']
    """
    k = stage.kernel
    ops = [
        f"conv {k}×{k}" + (" /2" if stage.downsample == "strided" and d == stage.depth - 1 else "")
        for d in range(stage.depth)
    ]
    if stage.downsample in ("max", "avg"):
        ops.append(f"{stage.downsample}-pool 2×2")
    elif stage.downsample == "conv":
        ops.append(f"conv {k}×{k} /2")
    if stage.skip == "proj":
        ops.append("shortcut: 1×1 conv /2 + BN")
    elif stage.skip == "pool":
        ops.append("shortcut: avg-pool 2×2 + zero-pad channels")
    return ops


def parts(arch: ArchSpec, input_shape: Sequence[int], num_classes: int | None) -> list[Part]:
    """The network part by part (stem, each stage, head) with the costs the search computed
    (:func:`search.cost.layer_costs`); the head's are ``None`` when ``num_classes`` is.

    Example:
        >>> arch = ArchSpec.from_row({"s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none",
        ...                 "s1.width": 8, "s1.depth": 1})
        >>> [(p.name, p.params) for p in parts(arch, (1, 8, 8), None)]
        [('stem', 88), ('s1', 592), ('head', None)]
    """
    out = []
    for layer in layer_costs(arch, input_shape=input_shape, num_classes=num_classes or 1):
        # parts are "stem", "s1" … "sN" and "head"
        stage = arch.stages[int(layer.name[1:]) - 1] if layer.name[1:].isdigit() else None
        head = layer.name == "head"
        unknown = head and num_classes is None
        out.append(
            Part(
                name=layer.name,
                ops=(
                    tuple(stage_ops(stage))
                    if stage
                    else ("global avg-pool", "linear")
                    if head
                    else ("conv 3×3",)
                ),
                stage=stage,
                out_channels=layer.out_channels,
                out_size=layer.out_size,
                params=None if unknown else layer.params,
                flops=None if unknown else layer.flops,
                receptive_field=layer.receptive_field,
            )
        )
    return out


def parts_table(network: Sequence[Part]) -> pd.DataFrame:
    """The Architecture page's table of ``network``: one row per part, counts written out
    with thousands separators (``-`` where unknown). The numbers come first and the ops,
    the longest text (drawn in the diagram too), last; the width is the output's first number.

    Example:
        >>> arch = ArchSpec.from_row({"s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none",
        ...                 "s1.width": 8, "s1.depth": 1})
        >>> parts_table(parts(arch, (1, 8, 8), 10))["FLOPs"].tolist()
        ['9,216', '73,728', '160']
    """
    return pd.DataFrame.from_records(
        [
            {
                "part": p.name,
                "output": p.output,
                "params": fmt_int(p.params),
                "FLOPs": fmt_int(p.flops),
                "receptive field": p.receptive_field,
                "downsample": p.stage.downsample if p.stage else "",
                "kernel": str(p.stage.kernel) if p.stage else "",
                "skip": p.stage.skip if p.stage else "",
                "ops": " → ".join(p.ops),
            }
            for p in network
        ]
    )


def diagram(network: Sequence[Part], input_shape: Sequence[int]) -> str:
    """Graphviz DOT of ``network``: input → stem → stages → head, left to right, each box with
    its ops, output size, parameters and FLOPs.

    Example:
        >>> arch = ArchSpec.from_row({"s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none",
        ...                 "s1.width": 8, "s1.depth": 1})
        >>> diagram(parts(arch, (1, 8, 8), 10), (1, 8, 8)).splitlines()[-1]
        'input -> stem -> s1 -> head; }'
    """
    chan, h, w = input_shape
    nodes = [f'input [label="input\\n{chan}×{h}×{w}", shape=plaintext];']
    for p in network:
        ops = "\\n".join(p.ops)
        nodes.append(
            f'{p.name} [label="{p.name}\\n{ops}\\nout {p.output}'
            f'\\n{fmt_int(p.params)} params · {fmt_int(p.flops)} FLOPs"];'
        )
    chain = " -> ".join(["input", *(p.name for p in network)])
    return (
        "digraph { rankdir=LR; node [shape=box, style=rounded, fontsize=10];\n"
        + "\n".join(nodes)
        + f"\n{chain}; }}"
    )


# The look of :func:`diagram_html`'s boxes: a page that includes its markup includes this once.
NETWORK_CSS = """
.ps-net { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; }
.ps-part { border: 1px solid #888; border-radius: 6px; padding: 6px 8px; font-size: 12px;
           line-height: 1.35; background: #fafafa; }
.ps-part b { display: block; font-size: 13px; }
.ps-part .ps-cost { color: #555; }
.ps-arrow { color: #888; font-size: 18px; }
"""


def diagram_html(network: Sequence[Part], input_shape: Sequence[int]) -> str:
    """:func:`diagram` as HTML boxes (styled by :data:`NETWORK_CSS`), input → stem → stages →
    head left to right, each with its ops, output size, parameters and FLOPs: what a page
    shows where Graphviz cannot run, such as a report opened offline.

    Example:
        >>> arch = ArchSpec.from_row({"s1.downsample": "avg", "s1.kernel": 3, "s1.skip": "none",
        ...                 "s1.width": 8, "s1.depth": 1})
        >>> page = diagram_html(parts(arch, (1, 8, 8), 10), (1, 8, 8))
        >>> page.count('class="ps-part"'), "avg-pool 2×2" in page
        (4, True)
    """
    chan, h, w = input_shape
    boxes = [f'<div class="ps-part"><b>input</b>{chan}×{h}×{w}</div>']
    for p in network:
        ops = "<br>".join(html.escape(op) for op in p.ops)
        boxes.append(
            f'<div class="ps-part"><b>{html.escape(p.name)}</b>{ops}<br>out {p.output}'
            f'<br><span class="ps-cost">{fmt_int(p.params)} params · '
            f"{fmt_int(p.flops)} FLOPs</span></div>"
        )
    arrow = '<span class="ps-arrow">→</span>'
    return f'<div class="ps-net">{arrow.join(boxes)}</div>'


def diff_table(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Two candidate rows side by side: one row per stage choice, ``state`` and metric, both
    values as text (:func:`dashboard.tables.fmt_value`) and whether they differ.

    Example:
        >>> row = {"s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none", "s1.width": 8,
        ...        "s1.depth": 1, "state": "complete", **dict.fromkeys(METRICS, 1)}
        >>> diff_table(row, {**row, "s1.kernel": 5, "flops": 2500}).query("differs")["B"].tolist()
        ['5', '2,500']
    """
    pa, pb = ArchSpec.from_row(a).params(), ArchSpec.from_row(b).params()
    pairs = [(k, pa.get(k), pb.get(k)) for k in dict.fromkeys([*pa, *pb])]
    pairs += [(k, a[k], b[k]) for k in ("state", *METRICS)]
    return pd.DataFrame.from_records(
        [
            # raw values decide: two accuracies can differ beyond the four places shown
            {"key": k, "A": fmt_value(x), "B": fmt_value(y), "differs": str(x) != str(y)}
            for k, x, y in pairs
        ]
    )
