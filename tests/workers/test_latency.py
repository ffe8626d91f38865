"""workers.train's device-normalised latency: the reference network, measured once per process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

import workers.train as train_module
from search.space import ArchSpec
from workers.data import Dataset, load_dataset
from workers.train import TrainConfig, reference_latency_ms, train


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture
def fresh_reference() -> Iterator[None]:
    reference_latency_ms.cache_clear()
    yield
    reference_latency_ms.cache_clear()


def _arch(width: int) -> ArchSpec:
    return ArchSpec.from_dict(
        {"stages": [{"downsample": "max", "kernel": 3, "skip": "none", "width": width}]}
    )


def test_latency_rel_is_the_latency_over_the_reference_of_the_same_settings(
    digits: Dataset, fresh_reference: None
) -> None:
    result = train(_arch(8), digits, TrainConfig(epochs=1, batch_size=64, latency_batch=16))
    reference = reference_latency_ms(
        torch.device("cpu"), input_shape=(1, 8, 8), batch=16, bf16=False, channels_last=False
    )
    assert result.latency_rel == result.latency_ms / reference
    assert result.to_dict()["latency_rel"] == result.latency_rel


def test_the_reference_is_measured_once_per_process(
    digits: Dataset, fresh_reference: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[tuple[int, ...]] = []
    measure = train_module._latency_ms

    def counting(model: Any, shape: tuple[int, ...], *args: Any) -> float:
        measured.append(shape)
        return measure(model, shape, *args)

    monkeypatch.setattr(train_module, "_latency_ms", counting)
    config = TrainConfig(epochs=1, batch_size=64, latency_batch=8)
    first = train(_arch(4), digits, config)
    second = train(_arch(8), digits, config)
    # two candidates measured, the reference once: the second training reused it
    assert len(measured) == 3
    info = reference_latency_ms.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert first.latency_ms / first.latency_rel == pytest.approx(
        second.latency_ms / second.latency_rel, rel=1e-12
    )
    # another batch is another measurement
    reference_latency_ms(
        torch.device("cpu"), input_shape=(1, 8, 8), batch=4, bf16=False, channels_last=False
    )
    assert len(measured) == 4
