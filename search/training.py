"""The hyperparameters of one training run: what a job sets for its candidates, the trainer takes.

Plain data and no torch, so that a job's training settings are validated at submit, stored with
the job and carried to the trials as one object; :func:`workers.train.train` runs them. Every
default lives here, the job config's included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from search._checks import boolean, integer, number

__all__ = ["SCHEDULES", "Schedule", "TrainConfig"]

Schedule = Literal["onecycle", "cosine", "constant"]
SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of one training run; checked when built.

    ``augment`` is a random horizontal flip plus a random crop after zero-padding the
    (normalised) image by ``H // 8`` pixels (4 for 32×32), drawn per image, per batch, on the
    device. ``"auto"`` settings resolve by device: ``device`` to CUDA when available, ``bf16``
    and ``channels_last`` to on for CUDA and off for CPU. ``schedule`` is per step over the
    planned ``epochs``: ``onecycle`` (linear warm-up over a quarter of the steps to ``lr``, then
    linear decay), ``cosine`` (from ``lr`` to 0) or ``constant``. A job sets ``epochs``,
    ``batch_size``, ``lr``, ``label_smoothing`` and ``augment``; the runner gives each trial
    its own ``seed``.

    Raises:
        ValueError: a value of the wrong type or out of range, with a one-line message.

    Example:
        >>> TrainConfig(epochs=3, batch_size=64).schedule
        'onecycle'
        >>> TrainConfig(epochs=0)
        Traceback (most recent call last):
        ...
        ValueError: epochs 0 must be at least 1
    """

    epochs: int
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: Schedule = "onecycle"
    label_smoothing: float = 0.1
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    latency_batch: int = 64
    bf16: bool | Literal["auto"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "latency_batch", "eval_batch_size"):
            integer(key, getattr(self, key), minimum=1)
        integer("seed", self.seed)
        # stored as floats, so that a TOML's `lr = 1` and `lr = 1.0` make equal configs
        for key, checked in (
            ("lr", number("lr", self.lr, positive=True)),
            ("momentum", number("momentum", self.momentum)),
            ("weight_decay", number("weight_decay", self.weight_decay)),
            ("label_smoothing", number("label_smoothing", self.label_smoothing, below=1.0)),
        ):
            object.__setattr__(self, key, checked)
        for key in ("nesterov", "augment"):
            boolean(key, getattr(self, key))
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r} (expected one of {', '.join(SCHEDULES)})"
            )
        for key in ("bf16", "channels_last"):
            if getattr(self, key) not in (True, False, "auto"):
                raise ValueError(f"{key} must be true, false or 'auto'")
