"""poolstride's search side: the space, costs, studies, analysis and the database (no torch)."""

from __future__ import annotations

from search.cost import Cost, LayerCost, arch_cost, layer_costs
from search.space import (
    DOWNSAMPLES,
    KERNELS,
    SKIPS,
    ArchSpec,
    SpaceConfig,
    StageChoices,
    StageSpec,
    max_stages,
    parse_input_shape,
)

__all__ = [
    "DOWNSAMPLES",
    "KERNELS",
    "SKIPS",
    "ArchSpec",
    "Cost",
    "LayerCost",
    "SpaceConfig",
    "StageChoices",
    "StageSpec",
    "arch_cost",
    "layer_costs",
    "max_stages",
    "parse_input_shape",
]
