"""Objectives a search may optimise, and the direction of each.

``test_acc`` is measured and stored for every candidate but is never an objective: choosing
architectures on the test split would leak it into the search.

``latency_rel`` is ``latency_ms`` divided by the latency of :data:`LATENCY_REFERENCE` measured
by the same process on the same device, input shape, batch, precision and memory format
(:func:`workers.train.reference_latency_ms`), so that latencies measured on a cluster of mixed
devices compare; ``latency_ms`` stays the raw figure of the device named on the candidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from search.space import ArchSpec, StageSpec

__all__ = [
    "DEFAULT_OBJECTIVES",
    "LATENCY_REFERENCE",
    "OBJECTIVES",
    "Direction",
    "direction",
    "validate_objectives",
]

Direction = Literal["maximize", "minimize"]

OBJECTIVES: dict[str, Direction] = {
    "val_acc": "maximize",
    "flops": "minimize",
    "params": "minimize",
    "activation_bytes": "minimize",
    "latency_ms": "minimize",
    "latency_rel": "minimize",
    "train_s": "minimize",
}

DEFAULT_OBJECTIVES: tuple[str, ...] = ("val_acc", "flops")

# the fixed network latency_rel divides by: one plain stage of 32 channels, which fits every
# input a space can have (a stage needs 2x2), with a 10-class head
LATENCY_REFERENCE = ArchSpec(stages=(StageSpec(downsample="max", kernel=3, skip="none", width=32),))


def direction(name: str) -> Direction:
    """The Optuna direction of objective ``name``.

    Example:
        >>> direction("val_acc"), direction("flops")
        ('maximize', 'minimize')
    """
    try:
        return OBJECTIVES[name]
    except KeyError:
        hint = " (test_acc is reported, never optimised)" if name == "test_acc" else ""
        raise ValueError(
            f"unknown objective {name!r}{hint} (expected one of {', '.join(OBJECTIVES)})"
        ) from None


def validate_objectives(names: Iterable[str]) -> tuple[str, ...]:
    """Check a list of objectives: known, at least one, no repeats.

    Example:
        >>> validate_objectives(["val_acc", "params"])
        ('val_acc', 'params')
    """
    out = tuple(names)
    if not out:
        raise ValueError("at least one objective is needed")
    for name in out:
        if not isinstance(name, str):
            raise ValueError(f"objective {name!r} is not a name")
        direction(name)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated objective in {', '.join(out)}")
    return out
