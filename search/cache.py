"""The key of the result cache: what identifies one training's result across jobs.

Two trainings with the same key give the same result (on one device type), so a worker that
finds a complete, fully trained candidate with the key it is about to train
(:meth:`search.store.Store.find_cached`) reuses that result instead. The key covers the
architecture (:meth:`search.space.ArchSpec.hash`), the data (the dataset's fingerprint: name,
content, split seed, validation share, input shape), every training setting that can change
the result, resolved as the training runs them (``"auto"`` means CUDA on one worker and CPU on
another, and bf16 with it), and the seed.

Example:
    >>> train = resolve_settings(TrainConfig(epochs=2), device_type="cpu")
    >>> train.device, train.bf16, train.channels_last
    ('cpu', False, False)
    >>> key = cache_key(arch_hash="0123456789abcdef", data_fingerprint="ab" * 8,
    ...                 settings_hash=settings_hash(train), seed=7)
    >>> len(key)
    32
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from search.training import TrainConfig

__all__ = ["cache_key", "device_type_for", "resolve_settings", "settings_hash"]


def device_type_for(train: TrainConfig, *, gpus_per_trial: float) -> str:
    """The type of device (``"cpu"``, ``"cuda"``, ...) a trial with ``train`` runs on.

    ``"auto"`` is CUDA when the trial is given a GPU share, else the CPU; an explicit device
    is its type, without the index (``"cuda:1"`` is ``"cuda"``).

    Example:
        >>> device_type_for(TrainConfig(epochs=1), gpus_per_trial=0.25)
        'cuda'
        >>> device_type_for(TrainConfig(epochs=1, device="cuda:1"), gpus_per_trial=0)
        'cuda'
    """
    if train.device == "auto":
        return "cuda" if gpus_per_trial > 0 else "cpu"
    return _device_type(train.device)


def resolve_settings(train: TrainConfig, *, device_type: str) -> TrainConfig:
    """``train`` with its ``"auto"`` settings decided as a trial on ``device_type`` runs them:
    ``device`` becomes ``device_type``, ``bf16`` and ``channels_last`` on for CUDA and off
    otherwise. Explicit settings stay.

    Raises:
        ValueError: ``device_type`` is ``"auto"`` or empty.

    Example:
        >>> cuda = resolve_settings(TrainConfig(epochs=1), device_type="cuda")
        >>> cuda.device, cuda.bf16, cuda.channels_last
        ('cuda', True, True)
        >>> resolve_settings(TrainConfig(epochs=1, bf16=False), device_type="cuda").bf16
        False
    """
    if not device_type or device_type == "auto":
        raise ValueError(f"device_type {device_type!r} must name a device type, e.g. cpu")
    device = device_type if train.device == "auto" else train.device
    on_cuda = _device_type(device) == "cuda"
    return dataclasses.replace(
        train,
        device=device,
        bf16=on_cuda if train.bf16 == "auto" else train.bf16,
        channels_last=on_cuda if train.channels_last == "auto" else train.channels_last,
    )


def settings_hash(train: TrainConfig) -> str:
    """16 hex digits identifying every setting of ``train`` but its seed (pass it resolved,
    :func:`resolve_settings`); the device counts by its type, as ``cuda:0`` and ``cuda:1``
    compute alike.

    Example:
        >>> a = TrainConfig(epochs=2, seed=1, device="cuda:0")
        >>> settings_hash(a) == settings_hash(TrainConfig(epochs=2, seed=9, device="cuda:1"))
        True
        >>> settings_hash(a) == settings_hash(TrainConfig(epochs=3, device="cuda:0"))
        False
    """
    settings = dataclasses.asdict(train)
    del settings["seed"]
    settings["device"] = _device_type(train.device)
    return _sha256(settings)[:16]


def cache_key(*, arch_hash: str, data_fingerprint: str, settings_hash: str, seed: int) -> str:
    """32 hex digits identifying one training's result: architecture, data, settings, seed.

    Example:
        >>> key = cache_key(arch_hash="a", data_fingerprint="d", settings_hash="s", seed=0)
        >>> key == cache_key(arch_hash="a", data_fingerprint="d", settings_hash="s", seed=1)
        False
    """
    return _sha256(
        {
            "arch_hash": arch_hash,
            "data_fingerprint": data_fingerprint,
            "settings_hash": settings_hash,
            "seed": seed,
        }
    )[:32]


def _device_type(device: str) -> str:
    # torch.device's spelling: TYPE or TYPE:INDEX
    return device.split(":", 1)[0]


def _sha256(value: dict[str, Any]) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
