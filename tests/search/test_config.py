"""Job configs, objectives and datasets: validation and the exact JSON round trip."""

from __future__ import annotations

import json
import re

import pytest

from search._checks import INT32
from search.config import LIMITS, NAME_LENGTH, JobConfig, space_mapping
from search.datasets import dataset_info
from search.objectives import direction, validate_objectives
from search.space import SpaceConfig
from search.store._models import Candidate, Epoch, Job, Stage, column_bounds
from search.training import TrainConfig

BASE = {"trials": 4, "epochs": 2}


def test_defaults_and_exact_round_trip_through_json() -> None:
    cfg = JobConfig.from_mapping(BASE)
    assert (cfg.dataset, cfg.name, cfg.sampler, cfg.objectives) == (
        "mnist5k",
        "mnist5k",
        "tpe",
        ("val_acc", "flops"),
    )
    assert (cfg.cpus_per_trial, cfg.gpus_per_trial, cfg.concurrency, cfg.max_attempts) == (
        1.0,
        0.0,
        2,
        3,
    )
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.label_smoothing) == (128, 0.05, 0.1)
    # the job's training defaults are the trainer's own: augment is off for both
    assert cfg.train == TrainConfig(epochs=2) and cfg.train.augment is False
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


# a config as `submit` stored it before the training settings became one object
STORED = {
    "augment": True,
    "batch_size": 64,
    "concurrency": 2,
    "cpus_per_trial": 1.0,
    "data_dir": None,
    "dataset": "digits",
    "epochs": 3,
    "gpus_per_trial": 0.0,
    "keep_weights": "front",
    "label_smoothing": 0.0,
    "lr": 0.1,
    "max_attempts": 3,
    "name": "digits",
    "objectives": ["val_acc", "flops"],
    "priority": 0,
    "sampler": "nsga2",
    "seed": 5,
    "space": {
        "depth": [1],
        "downsample": ["max", "avg", "strided", "conv"],
        "input": "1x8x8",
        "kernel": [3, 5, 7],
        "skip": ["none", "proj", "pool"],
        "stages": 2,
        "widths": [8, 16],
    },
    "trials": 3,
}


# the keys a config stored before the confirm and ablate phases lacks, as to_dict writes them
PHASE_DEFAULTS = {
    "seeds": 1,
    "ablate": "none",
    "reference": "best",
    "references": 1,
    "cache": True,
    "val_fraction": 0.1,
}
# a job stored before early stopping existed trained every candidate fully
EARLY_STOP_DEFAULTS = {"early_stop": "none", "eta": 3, "min_epochs": 1}


def test_a_stored_config_loads_and_is_written_back_flat_and_unchanged() -> None:
    cfg = JobConfig.from_dict(STORED)
    assert cfg.train == TrainConfig(
        epochs=3, batch_size=64, lr=0.1, label_smoothing=0.0, augment=True
    )
    # the keys of the later phases and the cache read as a single plain search, cache on
    assert cfg.to_dict() == {**STORED, **PHASE_DEFAULTS, **EARLY_STOP_DEFAULTS, "gpu_memory": None}
    assert (cfg.seeds, cfg.ablate, cfg.reference, cfg.cache) == (1, "none", None, True)
    # an older one without the later training keys gets today's defaults
    old = {k: v for k, v in STORED.items() if k not in ("augment", "label_smoothing")}
    assert JobConfig.from_dict(old).train == TrainConfig(epochs=3, batch_size=64, lr=0.1)


@pytest.mark.parametrize("reference", ["best", 0, 17])
def test_the_phase_keys_round_trip(reference: str | int) -> None:
    cfg = JobConfig.from_mapping(
        {
            **BASE,
            "seeds": 5,
            "ablate": "all",
            "reference": reference,
            "references": 3 if reference == "best" else 1,
            "cache": False,
            "val_fraction": 0.3,
        }
    )
    assert cfg.reference == (None if reference == "best" else reference)
    flat = cfg.to_dict()
    assert {k: flat[k] for k in PHASE_DEFAULTS} == {
        "seeds": 5,
        "ablate": "all",
        "reference": reference,
        "references": 3 if reference == "best" else 1,
        "cache": False,
        "val_fraction": 0.3,
    }
    assert JobConfig.from_dict(json.loads(json.dumps(flat))) == cfg


def test_the_training_settings_are_job_keys_only_flat() -> None:
    with pytest.raises(ValueError, match="unknown job key 'train'"):
        JobConfig.from_mapping({**BASE, "train": {"epochs": 2}})
    with pytest.raises(ValueError, match="unknown job key 'momentum'"):
        JobConfig.from_mapping({**BASE, "momentum": 0.5})
    assert JobConfig.from_mapping({**BASE, "lr": 1}).to_dict()["lr"] == 1.0


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
        ({"seeds": 0}, "seeds 0 must be at least 1"),
        ({"seeds": 101}, "seeds 101 must be at most 100"),
        ({"seeds": 2.0}, "seeds 2.0 must be an integer"),
        ({"ablate": "stride"}, "ablate 'stride' must be one of none, downsample, all"),
        ({"reference": "worst"}, "reference 'worst' must be best or a trial number"),
        ({"reference": -1}, "reference -1 must be at least 0"),
        ({"reference": 2**31}, "reference 2147483648 must be at most 2147483647"),
        ({"references": 0}, "references 0 must be at least 1"),
        ({"references": 21}, "references 21 must be at most 20"),
        ({"reference": 3, "references": 2}, "references 2 needs reference best"),
        ({"cache": "no"}, "cache 'no' must be true or false"),
        ({"val_fraction": 0}, "val_fraction 0 must be positive"),
        ({"val_fraction": 0.8}, "val_fraction 0.8 must be below 0.8"),
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


def test_the_limits_are_the_ranges_of_the_columns_the_values_go_to() -> None:
    stored = {
        "trials": [Job.trials_total],
        "max_attempts": [Job.max_attempts],
        "priority": [Job.priority],
        "epochs": [Candidate.epochs_total, Candidate.epochs_done, Epoch.epoch],
        "seed": [Candidate.seed],  # the trials' seeds, derived from the job's below 2**31
    }
    for key, columns in stored.items():
        for column in columns:
            bounds = column_bounds(column.type)
            assert bounds is not None and bounds.lo <= LIMITS[key].lo <= LIMITS[key].hi <= bounds.hi
    # the space's integers go to ps_stages, and a job's name to ps_jobs.name
    for column in (Stage.kernel, Stage.width, Stage.depth, Stage.stage):
        assert column_bounds(column.type) == INT32
    assert Job.name.type.length == NAME_LENGTH


SUBMIT_LIMITS = [
    ({"trials": 2**31}, "trials 2147483648 must be at most 2147483647"),
    ({"epochs": 2**31}, "epochs 2147483648 must be at most 2147483647"),
    ({"priority": -(2**31) - 1}, "priority -2147483649 must be at least -2147483648"),
    ({"seed": -1}, "seed -1 must be at least 0"),
    ({"seed": 2**31}, "seed 2147483648 must be at most 2147483647"),
    ({"name": "a\x00b"}, "name 'a\\x00b' must not contain control characters"),
    ({"name": "a\x85b"}, "name 'a\\x85b' must not contain control characters"),
    ({"data_dir": "a\x00b"}, "data_dir 'a\\x00b' must be a path"),
    ({"space": {"widths": [8, 2**31, 8]}}, "stage 2: width 2147483648 must be at most"),
    ({"space": {"depth": [1, 2**31]}}, "stage 1: depth 2147483648 must be at most"),
]


@pytest.mark.parametrize(("data", "message"), SUBMIT_LIMITS)
def test_submit_limits_refuse_a_new_config_but_not_a_stored_one(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        JobConfig.from_mapping({**BASE, **data})
    assert str(refused.value).startswith(message)
    # a row stored before the limit existed reads back as it was written
    stored = JobConfig.from_mapping(BASE).to_dict()
    for key, value in data.items():
        stored[key] = {**stored[key], **value} if isinstance(value, dict) else value
    assert JobConfig.from_dict(stored).to_dict() == stored


def test_early_stop_defaults_by_the_epochs_and_checks_its_values() -> None:
    assert JobConfig.from_mapping({"trials": 2, "epochs": 3}).early_stop == "none"
    four = JobConfig.from_mapping({"trials": 2, "epochs": 4})
    assert (four.early_stop, four.eta, four.min_epochs) == ("mo-asha", 3, 1)
    # stored resolved: the row reads back the same whatever the epochs
    assert JobConfig.from_dict(four.to_dict()) == four
    off = JobConfig.from_mapping({"trials": 2, "epochs": 9}, overrides={"early_stop": "none"})
    assert JobConfig.from_dict(off.to_dict()).early_stop == "none"
    stored = {k: v for k, v in four.to_dict().items() if k not in ("early_stop", "eta")}
    assert JobConfig.from_dict(stored).early_stop == "none"
    on = JobConfig.from_mapping({"trials": 2, "epochs": 2, "early_stop": "mo-asha"})
    assert on.early_stop == "mo-asha"
    for bad, message in [
        ({"early_stop": "asha"}, "early_stop 'asha' must be one of none, mo-asha"),
        ({"eta": 1}, "eta 1 must be at least 2"),
        ({"min_epochs": 0}, "min_epochs 0 must be at least 1"),
        ({"min_epochs": 4}, "min_epochs 4 must be below epochs 4 with early_stop mo-asha"),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            JobConfig.from_mapping({"trials": 2, "epochs": 4, **bad})
    # no rung to stop at is no error when nothing stops
    assert JobConfig.from_mapping({"trials": 2, "epochs": 1, "min_epochs": 3}).min_epochs == 3


def test_gpus_per_trial_auto_and_the_gpu_memory_round_trip() -> None:
    cfg = JobConfig.from_mapping(
        {"trials": 1, "epochs": 1, "gpus_per_trial": "auto", "gpu_memory": 80}
    )
    assert (cfg.gpus_per_trial, cfg.gpu_memory) == ("auto", 80.0)
    assert JobConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    plain = JobConfig.from_mapping({"trials": 1, "epochs": 1, "gpus_per_trial": 0.25})
    assert (plain.gpus_per_trial, plain.gpu_memory) == (0.25, None)
    for bad, message in (
        ({"gpus_per_trial": "most"}, "gpus_per_trial 'most' must be auto or a number"),
        ({"gpus_per_trial": -1}, "gpus_per_trial -1 must be at least 0"),
        ({"gpu_memory": 0}, "gpu_memory 0 must be positive"),
    ):
        with pytest.raises(ValueError, match=message):
            JobConfig.from_mapping({"trials": 1, "epochs": 1, **bad})
