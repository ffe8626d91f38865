"""The cache key: every setting that can change a result is in it, the seed separately, and
``"auto"`` settings count as what they resolve to on the trial's device type."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from search.cache import cache_key, device_type_for, resolve_settings, settings_hash
from search.training import TrainConfig

BASE = TrainConfig(epochs=3)
# a different valid value for every TrainConfig field
CHANGED: dict[str, Any] = {
    "epochs": 4,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.8,
    "weight_decay": 1e-4,
    "nesterov": False,
    "schedule": "cosine",
    "label_smoothing": 0.0,
    "augment": True,
    "seed": 1,
    "device": "cuda",
    "latency_batch": 32,
    "bf16": True,
    "channels_last": True,
    "eval_batch_size": 512,
}
KEY = {"arch_hash": "0123456789abcdef", "data_fingerprint": "f" * 16, "settings_hash": "s" * 16}


def test_every_training_setting_is_covered() -> None:
    assert set(CHANGED) == {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("name", sorted(set(CHANGED) - {"seed"}))
def test_every_setting_but_the_seed_changes_the_settings_hash(name: str) -> None:
    changed = dataclasses.replace(BASE, **{name: CHANGED[name]})
    assert settings_hash(changed) != settings_hash(BASE)


def test_the_seed_is_the_keys_own_and_the_device_counts_by_its_type() -> None:
    assert settings_hash(dataclasses.replace(BASE, seed=5)) == settings_hash(BASE)
    gpu0, gpu1 = (dataclasses.replace(BASE, device=d) for d in ("cuda:0", "cuda:1"))
    assert settings_hash(gpu0) == settings_hash(gpu1)
    assert len(settings_hash(BASE)) == 16 and int(settings_hash(BASE), 16) >= 0


@pytest.mark.parametrize("part", [*KEY, "seed"])
def test_each_part_changes_the_cache_key(part: str) -> None:
    key = cache_key(**KEY, seed=0)
    assert len(key) == 32 and int(key, 16) >= 0
    other = {**KEY, "seed": 0, part: 1 if part == "seed" else "x"}
    assert cache_key(**other) != key  # type: ignore[arg-type]
    assert cache_key(**KEY, seed=0) == key


def test_auto_settings_resolve_per_device_type() -> None:
    cpu = resolve_settings(BASE, device_type="cpu")
    cuda = resolve_settings(BASE, device_type="cuda")
    assert (cpu.device, cpu.bf16, cpu.channels_last) == ("cpu", False, False)
    assert (cuda.device, cuda.bf16, cuda.channels_last) == ("cuda", True, True)
    # so the same "auto" job is two different trainings on the two device types
    assert settings_hash(cpu) != settings_hash(cuda)
    # what a job set stays; "auto" precision follows the device actually used
    fixed = dataclasses.replace(BASE, device="cpu", bf16=True)
    resolved = resolve_settings(fixed, device_type="cuda")
    assert (resolved.device, resolved.bf16, resolved.channels_last) == ("cpu", True, False)
    # resolving is idempotent: resolved settings hash as themselves
    assert resolve_settings(cuda, device_type="cuda") == cuda
    with pytest.raises(ValueError, match="device_type 'auto' must name a device type"):
        resolve_settings(BASE, device_type="auto")


def test_the_device_type_of_a_trial() -> None:
    assert device_type_for(BASE, gpus_per_trial=0.0) == "cpu"
    assert device_type_for(BASE, gpus_per_trial=0.5) == "cuda"
    on = dataclasses.replace(BASE, device="cuda:1")
    assert device_type_for(on, gpus_per_trial=0.0) == "cuda"
    assert device_type_for(dataclasses.replace(BASE, device="cpu"), gpus_per_trial=1) == "cpu"
