"""poolstride's search side: the space, costs, studies, analysis and the database (no torch).

The re-exports below load on first use (PEP 562), so that importing one submodule — the space,
the costs, the verdicts — does not import Optuna and SQLAlchemy through ``search.config`` and
``search.study``: a bare GPU machine with only torch, numpy and pandas runs the analysis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.config import JobConfig
    from search.cost import Cost, LayerCost, arch_cost, layer_costs
    from search.datasets import DATASETS, DatasetInfo, dataset_info
    from search.objectives import (
        DEFAULT_OBJECTIVES,
        OBJECTIVES,
        direction,
        validate_objectives,
    )
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

# the submodule each re-exported name lives in
_HOMES = {
    "JobConfig": "config",
    **dict.fromkeys(("Cost", "LayerCost", "arch_cost", "layer_costs"), "cost"),
    **dict.fromkeys(("DATASETS", "DatasetInfo", "dataset_info"), "datasets"),
    **dict.fromkeys(
        ("DEFAULT_OBJECTIVES", "OBJECTIVES", "direction", "validate_objectives"), "objectives"
    ),
    **dict.fromkeys(
        (
            "DOWNSAMPLES",
            "KERNELS",
            "SKIPS",
            "ArchSpec",
            "SpaceConfig",
            "StageChoices",
            "StageSpec",
            "max_stages",
            "parse_input_shape",
        ),
        "space",
    ),
    "SAMPLERS": "study",
    "TrainConfig": "training",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"search.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
