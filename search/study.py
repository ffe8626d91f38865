"""A job's Optuna study: the sampler registry, creating or loading the study, and recovery.

Optuna only: no Ray, no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

__all__ = ["SAMPLERS", "make_sampler"]

SamplerFactory = Callable[[int, dict[str, list[Any]]], optuna.samplers.BaseSampler]

# name -> factory(seed, grid): the one list of sampler names that config validation, the CLI
# help and the runner read
SAMPLERS: dict[str, SamplerFactory] = {
    "nsga2": lambda seed, grid: optuna.samplers.NSGAIISampler(seed=seed),
    "tpe": lambda seed, grid: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed, grid: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda seed, grid: optuna.samplers.GridSampler(grid, seed=seed),
}


def make_sampler(
    name: str, *, seed: int, space_grid: dict[str, list[Any]]
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name`` (one of :data:`SAMPLERS`).

    Example:
        >>> type(make_sampler("tpe", seed=0, space_grid={})).__name__
        'TPESampler'
    """
    try:
        factory = SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown sampler {name!r} (expected one of {', '.join(SAMPLERS)})"
        ) from None
    return factory(seed, space_grid)
