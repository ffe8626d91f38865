"""Job configs, objectives and datasets: validation and the exact JSON round trip."""

from __future__ import annotations

import json

import pytest

from search.config import JobConfig, space_mapping
from search.datasets import dataset_info
from search.objectives import direction, validate_objectives
from search.space import SpaceConfig

BASE = {"trials": 4, "epochs": 2}


def test_defaults_and_exact_round_trip_through_json() -> None:
    cfg = JobConfig.from_mapping(BASE)
    assert (cfg.dataset, cfg.name, cfg.sampler, cfg.objectives) == (
        "mnist5k",
        "mnist5k",
        "nsga2",
        ("val_acc", "flops"),
    )
    assert (cfg.cpus_per_trial, cfg.gpus_per_trial, cfg.concurrency, cfg.max_attempts) == (
        1.0,
        0.0,
        2,
        3,
    )
    assert (cfg.batch_size, cfg.lr, cfg.label_smoothing, cfg.augment) == (128, 0.05, 0.1, False)
    assert cfg.space.input_shape == (1, 28, 28)
    rich = JobConfig.from_mapping(
        {
            **BASE,
            "dataset": "synthetic",
            "objectives": ["val_acc", "params", "latency_ms"],
            "sampler": "tpe",
            "seed": 3,
            "priority": -1,
            "gpus_per_trial": 0.5,
            "augment": True,
            "space": {
                "input": "3x16x16",
                "stages": 3,
                "widths": [8, [16, 24], 32],
                "kernel": [5, 3],
                "overrides": {"s2.downsample": ["strided", "max"]},
            },
        }
    )
    again = JobConfig.from_dict(json.loads(json.dumps(rich.to_dict())))
    assert again == rich
    assert again.space.stages[1].downsample == ("strided", "max")
    assert SpaceConfig.from_mapping(space_mapping(rich.space)) == rich.space


def test_flags_override_the_file() -> None:
    cfg = JobConfig.from_mapping(
        {**BASE, "dataset": "digits", "seed": 1},
        overrides={"seed": 5, "trials": None, "space": {"stages": 2}},
    )
    assert (cfg.seed, cfg.trials, len(cfg.space.stages)) == (5, 4, 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"sampler": "cmaes"}, "unknown sampler"),
        ({"objectives": ["test_acc"]}, "test_acc is reported"),
        ({"objectives": ["val_acc", "val_acc"]}, "repeated objective"),
        ({"objectives": []}, "at least one objective"),
        ({"trials": 0}, "trials 0 must be at least 1"),
        ({"epochs": True}, "must be an integer"),
        ({"cpus_per_trial": 0}, "must be positive"),
        ({"gpus_per_trial": -1}, "at least 0"),
        ({"label_smoothing": 1.0}, "below 1.0"),
        ({"augment": "yes"}, "true or false"),
        ({"stages": 3}, "space keys go in a [space] table"),
        ({"dataset": "digits", "space": {"stages": 4}}, "stage 4: its input is 1x1"),
        ({"dataset": "digits", "space": {"input": "3x32x32"}}, "contradicts"),
        ({"dataset": "cifar10"}, "needs --data-dir"),
        ({"dataset": "npz", "data_dir": "x.npz"}, "needs --input"),
        ({"space": {"kernel": [4]}}, "kernel 4 must be an odd integer"),
    ],
)
def test_bad_configs_say_what_is_wrong(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        JobConfig.from_mapping({**BASE, **data})


def test_trials_and_epochs_are_required() -> None:
    with pytest.raises(ValueError, match="trials is required"):
        JobConfig.from_mapping({"epochs": 1})


def test_objectives_and_datasets_registries() -> None:
    assert direction("val_acc") == "maximize" and direction("train_s") == "minimize"
    assert validate_objectives(["flops"]) == ("flops",)
    with pytest.raises(ValueError, match="expected one of val_acc"):
        direction("accuracy")
    assert dataset_info("cifar10").input_shape == (3, 32, 32)
    assert dataset_info("imagefolder").num_classes is None
    assert JobConfig.from_mapping(
        {**BASE, "dataset": "imagefolder", "data_dir": "d"}
    ).space.input_shape == (3, 32, 32)
