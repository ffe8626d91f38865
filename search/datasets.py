"""Datasets by name, as metadata only: input shape, class count, whether data must be given.

The tensors themselves are ``workers.data``'s business; this module imports no torch so that the
CLI can validate a search before anything is trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DATASETS", "DEFAULT_DATASET", "DatasetFacts", "DatasetInfo", "dataset_info"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a search needs to know about a dataset before loading it.

    Attributes:
        name: The registry name.
        input_shape: ``(C, H, W)`` when the dataset fixes it; ``None`` when ``--input`` gives it.
        num_classes: The class count when known up front; ``None`` when found at run time.
        needs_data: Whether ``--data-dir`` (a folder, or the ``.npz`` file) must be given.
        default_input: The shape used when the dataset does not fix one and ``--input`` is absent
            (``None``: ``--input`` is required).
    """

    name: str
    input_shape: tuple[int, int, int] | None
    num_classes: int | None
    needs_data: bool
    default_input: tuple[int, int, int] | None = None


DEFAULT_DATASET = "mnist5k"

DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("mnist5k", (1, 28, 28), 10, needs_data=False),
        DatasetInfo("digits", (1, 8, 8), 10, needs_data=False),
        DatasetInfo("cifar10", (3, 32, 32), 10, needs_data=True),
        DatasetInfo("imagefolder", None, None, needs_data=True, default_input=(3, 32, 32)),
        DatasetInfo("npz", None, None, needs_data=True),
        DatasetInfo("synthetic", None, 10, needs_data=False, default_input=(3, 32, 32)),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """Look a dataset up by name.

    Example:
        >>> dataset_info("digits").input_shape
        (1, 8, 8)
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r} (expected one of {', '.join(DATASETS)})"
        ) from None


@dataclass(frozen=True)
class DatasetFacts:
    """What a worker learnt about a job's dataset when it first loaded it.

    Stored on the job (``ps_jobs.dataset_facts``), so export and the dashboard read the class
    count, input shape and normalisation without reloading the data or inferring the class count
    from parameter counts. ``fingerprint`` identifies the exact splits the job trained and
    evaluated on (``workers.data.Dataset.fingerprint``; ``None`` in what older workers
    recorded).

    Example:
        >>> facts = DatasetFacts(10, (1, 8, 8), (0.3,), (0.2,), fingerprint="9f2c41d07be35a18")
        >>> DatasetFacts.from_dict(facts.to_dict()) == facts
        True
    """

    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready values (``fingerprint`` only when known)."""
        out: dict[str, object] = {
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.fingerprint is not None:
            out["fingerprint"] = self.fingerprint
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetFacts:
        """Rebuild from :meth:`to_dict`'s form."""
        shape = tuple(int(v) for v in data["input_shape"])
        if len(shape) != 3:
            raise ValueError(f"input_shape {shape} is not (C, H, W)")
        return cls(
            int(data["num_classes"]),
            (shape[0], shape[1], shape[2]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["std"]),
            None if data.get("fingerprint") is None else str(data["fingerprint"]),
        )
