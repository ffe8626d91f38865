"""poolstride's search side: the space, costs, studies, analysis and the database (no torch)."""

from __future__ import annotations

from search.config import JobConfig
from search.cost import Cost, LayerCost, arch_cost, layer_costs
from search.datasets import DATASETS, DatasetInfo, dataset_info
from search.objectives import DEFAULT_OBJECTIVES, OBJECTIVES, direction, validate_objectives
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
from search.study import SAMPLERS
from search.training import TrainConfig

__all__ = [
    "DATASETS",
    "DEFAULT_OBJECTIVES",
    "DOWNSAMPLES",
    "KERNELS",
    "OBJECTIVES",
    "SAMPLERS",
    "SKIPS",
    "ArchSpec",
    "Cost",
    "DatasetInfo",
    "JobConfig",
    "LayerCost",
    "SpaceConfig",
    "StageChoices",
    "StageSpec",
    "TrainConfig",
    "arch_cost",
    "dataset_info",
    "direction",
    "layer_costs",
    "max_stages",
    "parse_input_shape",
    "validate_objectives",
]
