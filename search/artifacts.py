"""Where trained weights live: a folder next to the database, or ``$POOLSTRIDE_ARTIFACTS``.

A job keeps the weights of its Pareto-front candidates (``keep_weights = "front"``, the default),
of every complete candidate (``"all"``) or none (``"none"``), one file per candidate:
``<artifacts>/job-<id>/trial-<number>.pt``, a ``torch.save``d state dict. The worker's driver
writes them (trial processes send the bytes back), so a cluster needs no shared file system
between its nodes, only between the workers' drivers and the users who export.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from sqlalchemy.engine import make_url

__all__ = [
    "ARTIFACTS_ENV_VAR",
    "EXPORT_FORMATS",
    "KEEP_WEIGHTS",
    "ExportFormat",
    "KeepWeights",
    "artifact_dir",
    "weights_path",
]

ARTIFACTS_ENV_VAR = "POOLSTRIDE_ARTIFACTS"
KeepWeights = Literal["front", "all", "none"]
KEEP_WEIGHTS: tuple[KeepWeights, ...] = get_args(KeepWeights)
# what ``poolstride export`` writes: here, so the CLI knows the names without importing torch
ExportFormat = Literal["torchscript", "onnx", "state"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)


def artifact_dir(db_url: str) -> Path:
    """The artifact folder of the database at ``db_url``.

    ``$POOLSTRIDE_ARTIFACTS`` if set; for a SQLite file ``<file>-artifacts`` beside it; for a
    server database ``poolstride-artifacts`` in the current folder.

    Example:
        >>> str(artifact_dir("sqlite:////data/ps.db"))  # doctest: +SKIP
        '/data/ps.db-artifacts'
    """
    configured = os.environ.get(ARTIFACTS_ENV_VAR)
    if configured:
        return Path(configured)
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db_file = Path(url.database)
        return db_file.with_name(db_file.name + "-artifacts")
    return Path("poolstride-artifacts")


def weights_path(db_url: str, job_id: int, trial_number: int) -> Path:
    """The state-dict file of one candidate (it exists only if the job kept it)."""
    return artifact_dir(db_url) / f"job-{job_id}" / f"trial-{trial_number}.pt"
