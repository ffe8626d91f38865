"""workers.train: learning, per-epoch reports, early stop, divergence, determinism, augmentation.

``augment`` is off by default (the jobs' default); the tests that trained with it on before the
default moved keep it on explicitly.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from search.space import ArchSpec
from search.training import Schedule
from workers.data import Dataset, load_dataset
from workers.train import SCHEDULES, TrainConfig, TrainResult, augment_batch, train


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def _arch(*widths: int) -> ArchSpec:
    return ArchSpec.from_dict(
        {"stages": [{"downsample": "max", "kernel": 3, "skip": "none", "width": w} for w in widths]}
    )


def test_a_few_epochs_on_digits_learn(digits: Dataset) -> None:
    config = TrainConfig(epochs=4, batch_size=32, augment=False)
    result = train(_arch(8, 16), digits, config)
    assert isinstance(result, TrainResult)
    assert result.val_acc > 0.7 and result.test_acc > 0.7  # chance is 0.1
    assert result.epochs_done == 4 and len(result.val_acc_per_epoch) == 4
    assert result.val_acc == result.val_acc_per_epoch[-1]
    assert result.train_loss_per_epoch[-1] < result.train_loss_per_epoch[0]
    assert result.device == "cpu" and result.precision == "fp32"
    assert result.train_s > 0 and result.images_per_s > 0
    assert result.latency_ms > 0 and result.latency_batch == 64
    assert result.peak_mem_bytes > 0
    assert result.to_dict()["val_acc_per_epoch"] == list(result.val_acc_per_epoch)


def test_on_epoch_reports_every_epoch_and_true_stops(digits: Dataset) -> None:
    seen: list[tuple[int, float, float, float]] = []

    def report(epoch: int, val_acc: float, loss: float, seconds: float) -> bool:
        seen.append((epoch, val_acc, loss, seconds))
        return epoch == 2

    result = train(
        _arch(4), digits, TrainConfig(epochs=5, batch_size=64, augment=True), on_epoch=report
    )
    assert [s[0] for s in seen] == [1, 2]
    assert result.epochs_done == 2
    assert [s[1] for s in seen] == list(result.val_acc_per_epoch)
    assert [s[2] for s in seen] == list(result.train_loss_per_epoch)
    assert all(s[3] > 0 for s in seen) and math.isclose(sum(s[3] for s in seen), result.train_s)


def test_non_finite_loss_raises(digits: Dataset) -> None:
    poisoned = dataclasses.replace(digits, x_train=digits.x_train.float().fill_(float("nan")))
    message = "training loss became nan in epoch 1 (lr 0.05); the candidate diverged"
    with pytest.raises(FloatingPointError, match=f"^{re.escape(message)}$"):
        train(_arch(4), poisoned, TrainConfig(epochs=2, batch_size=64, augment=True))


def test_cpu_training_is_deterministic_per_seed(digits: Dataset) -> None:
    runs = [
        train(_arch(4, 8), digits, TrainConfig(epochs=2, batch_size=64, augment=True, seed=s))
        for s in (7, 7, 8)
    ]
    assert runs[0].val_acc_per_epoch == runs[1].val_acc_per_epoch
    assert runs[0].train_loss_per_epoch == runs[1].train_loss_per_epoch
    assert runs[0].train_loss_per_epoch != runs[2].train_loss_per_epoch


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_trains(digits: Dataset, schedule: Schedule) -> None:
    config = TrainConfig(epochs=1, batch_size=64, augment=True, schedule=schedule)
    result = train(_arch(4), digits, config)
    assert result.epochs_done == 1 and math.isfinite(result.train_loss_per_epoch[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs 0 must be at least 1"),
        ({"epochs": 2, "batch_size": 1.5}, "batch_size 1.5 must be an integer"),
        ({"epochs": 1, "lr": 0}, "lr 0 must be positive"),
        ({"epochs": 1, "augment": 1}, "augment 1 must be true or false"),
        (
            {"epochs": 1, "schedule": "step"},
            "unknown schedule 'step' (expected one of onecycle, cosine, constant)",
        ),
        ({"epochs": 1, "bf16": "yes"}, "bf16 must be true, false or 'auto'"),
        ({"epochs": 1, "label_smoothing": 1.0}, "label_smoothing 1.0 must be below 1.0"),
    ],
)
def test_bad_config_is_a_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_augmentation_flips_and_translates_each_image() -> None:
    x = torch.randn(16, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, pad=2, generator=gen)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = set()
    for i in range(len(x)):
        # each output is its own image, maybe flipped, shifted by at most 2 pixels
        matches = [
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(
                out[i], (padded[i].flip(2) if flip else padded[i])[:, dy : dy + 8, dx : dx + 8]
            )
        ]
        assert matches, f"image {i} is not a flip/shift of its input"
        flips.add(matches[0][0])
    assert flips == {False, True}


def test_augmentation_without_padding_only_flips() -> None:
    x = torch.randn(32, 1, 4, 4)
    out = augment_batch(x, pad=0, generator=torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)
