"""The search-space and job flags, and their merging with a TOML config (flags win).

``space`` takes the space flags; ``submit`` and ``run`` take both sets. The flags use the keys of
the TOML files: a space file's top level (or its ``[space]`` table), a job file's top level with
the space in ``[space]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from search.artifacts import KEEP_WEIGHTS
from search.cli._common import stack
from search.config import EARLY_STOP_EPOCHS, JobConfig
from search.datasets import DATASETS, DEFAULT_DATASET
from search.objectives import OBJECTIVES
from search.space import SpaceConfig, load_toml
from search.study import SAMPLER_HELP, SAMPLERS
from search.training import TrainConfig
from search.vocabulary import ABLATE_MODES, EARLY_STOPS

__all__ = [
    "RUN_DEFAULTS",
    "SPACE_FLAGS",
    "SUBMIT_DEFAULTS",
    "job_config_from_flags",
    "job_options",
    "space_from_flags",
    "space_mapping_from_flags",
    "space_options",
]


# submit's defaults where they differ from a JobConfig's own: a queued job answers the
# per-stage question, while a config built in code (a test, a script) stays one plain search
SUBMIT_DEFAULTS: dict[str, Any] = {"seeds": 3, "ablate": "all"}
# `run`'s own defaults, below a TOML's keys and the flags: the README's main job, sized to
# answer the per-stage downsampling question on mnist5k in about five minutes on two cores.
# Widths 16/32/64 reach ~95 % in 3 epochs (8/16/32 stay near 85 % and twice as noisy), and
# 1,000 validation images halve the evaluation noise of the paired differences against 500
RUN_DEFAULTS: dict[str, Any] = {
    "trials": 8,
    "epochs": 3,
    "seeds": 3,
    "ablate": "downsample",
    "val_fraction": 0.2,
    "space": {"widths": [16, 32, 64]},
}


def _default(name: str) -> str:
    """A job key's default as the help shows it, read from the config classes that own it."""
    owner = TrainConfig if name in TrainConfig.__dataclass_fields__ else JobConfig
    value = owner.__dataclass_fields__[name].default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


# the parameters space_options adds besides --config; they are space_mapping_from_flags's
SPACE_FLAGS = (
    "input_shape",
    "stages",
    "widths",
    "depth",
    "downsample",
    "kernel",
    "skip",
    "overrides",
)

space_options = stack(
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="TOML file with the space keys (top level or a [space] table).",
    ),
    click.option("--input", "input_shape", help="Input shape CxHxW, e.g. 3x32x32."),
    click.option("--stages", type=int, help="Number of stages."),
    click.option(
        "--widths",
        help="Width per stage, e.g. 32,64,128; 16/32 makes one stage's width searchable.",
    ),
    click.option("--depth", help="Convs per stage (all stages), e.g. 1 or 1,2 to search."),
    click.option("--downsample", help="Allowed downsamples, e.g. max,avg,strided,conv."),
    click.option("--kernel", help="Allowed kernel sizes, e.g. 3,5,7."),
    click.option("--skip", help="Allowed skips, e.g. none,proj,pool."),
    click.option(
        "--override",
        "overrides",
        multiple=True,
        metavar="sN.KEY=V1,V2",
        help="One stage's allowed values, e.g. s2.downsample=max,strided.",
    ),
)

job_options = stack(
    click.option("--name", help="Job name (default: the dataset)."),
    click.option("--dataset", help=f"One of {', '.join(DATASETS)} (default {DEFAULT_DATASET})."),
    click.option(
        "--data-dir",
        "--data-path",
        "data_dir",
        metavar="PATH",
        help="Data folder (cifar10, imagefolder) or .npz file (npz).",
    ),
    click.option(
        "--trials",
        type=int,
        help="Search candidates evaluated (trained, stopped early or cached); required for "
        "submit, "
        f"run: {RUN_DEFAULTS['trials']}.",
    ),
    click.option("--epochs", type=int, help="Epochs per candidate; required for submit, run: 3."),
    click.option(
        "--objectives",
        help=f"Comma-separated, of {', '.join(OBJECTIVES)} (default {_default('objectives')}).",
    ),
    click.option(
        "--sampler",
        help="; ".join(f"{name}: {SAMPLER_HELP[name]}" for name in SAMPLERS)
        + f" (default {_default('sampler')}).",
    ),
    click.option(
        "--seed", type=int, help=f"Sampler and training seed (default {_default('seed')})."
    ),
    click.option(
        "--priority", type=int, help=f"Higher runs first (default {_default('priority')})."
    ),
    click.option(
        "--cpus-per-trial",
        type=float,
        help=f"CPUs per trial (default {_default('cpus_per_trial')}).",
    ),
    click.option(
        "--gpus-per-trial",
        metavar="auto|F",
        callback=lambda ctx, param, value: _gpu_share(value),
        help="GPU share per trial; auto: the share of one GPU the candidate's memory estimate "
        "needs, of 1/8, 1/4, 1/2 or 1, and 0 where no GPU is found "
        f"(default {_default('gpus_per_trial')}).",
    ),
    click.option(
        "--gpu-memory",
        type=float,
        metavar="GiB",
        help="Memory of each GPU, for --gpus-per-trial auto (default: the smallest "
        "gpu_memory_gib resource the Ray nodes declare, else the worker's CUDA device 0).",
    ),
    click.option(
        "--concurrency", type=int, help=f"Trials at once (default {_default('concurrency')})."
    ),
    click.option(
        "--max-attempts",
        type=int,
        help=f"Claims before a crashing job is failed (default {_default('max_attempts')}).",
    ),
    click.option(
        "--batch-size", type=int, help=f"Training batch size (default {_default('batch_size')})."
    ),
    click.option("--lr", type=float, help=f"Peak learning rate (default {_default('lr')})."),
    click.option(
        "--label-smoothing",
        type=float,
        help=f"Label smoothing (default {_default('label_smoothing')}).",
    ),
    click.option(
        "--augment/--no-augment",
        default=None,
        help=f"Flip and crop augmentation (default {_default('augment')}).",
    ),
    click.option(
        "--keep-weights",
        type=click.Choice(KEEP_WEIGHTS),
        help="Trained weights to keep for export (default: the Pareto front).",
    ),
    click.option(
        "--seeds",
        type=int,
        metavar="N",
        help=f"Seeds per front member and per ablation variant; 1 skips the confirm phase "
        f"(default {SUBMIT_DEFAULTS['seeds']}).",
    ),
    click.option(
        "--ablate",
        type=click.Choice(ABLATE_MODES),
        help="Stage choices to vary one at a time around the reference "
        f"(default {SUBMIT_DEFAULTS['ablate']} for submit, {RUN_DEFAULTS['ablate']} for run).",
    ),
    click.option(
        "--reference",
        metavar="best|TRIAL",
        help="Architecture to ablate around: the most accurate front member, or that trial's "
        "(default best).",
    ),
    click.option(
        "--references",
        type=int,
        metavar="K",
        help="With --reference best, ablate around the K most accurate front members "
        f"(default {_default('references')}).",
    ),
    click.option(
        "--cache/--no-cache",
        default=None,
        help=f"Reuse the results of identical trainings of earlier jobs "
        f"(default {_default('cache')}).",
    ),
    click.option(
        "--early-stop",
        type=click.Choice(EARLY_STOPS),
        help="Stop search candidates at epochs min_epochs*eta^k unless they rank in the best "
        "1/eta on val_acc and the objectives known before training (mo-asha); stopped ones "
        f"count toward --trials (default mo-asha from {EARLY_STOP_EPOCHS} epochs, else none).",
    ),
    click.option(
        "--eta",
        type=int,
        metavar="N",
        help=f"With --early-stop mo-asha, keep the best 1/N at each rung (default "
        f"{_default('eta')}).",
    ),
    click.option(
        "--min-epochs",
        type=int,
        metavar="N",
        help=f"With --early-stop mo-asha, the first rung's epochs (default "
        f"{_default('min_epochs')}).",
    ),
    click.option(
        "--val-fraction",
        type=float,
        metavar="F",
        help="Share of each class held out for validation where the dataset has no split "
        f"(default {_default('val_fraction')}, run: {RUN_DEFAULTS['val_fraction']}).",
    ),
)


def space_from_flags(*, config_path: str | None, **flags: Any) -> SpaceConfig:
    """Merge the space TOML (if any) with the space flags into a validated space, within the
    bounds ``submit`` holds a job's space to (:meth:`SpaceConfig.check_bounds`).

    Raises:
        ValueError: a bad flag, file or value, in one line.

    Example:
        >>> flags = dict.fromkeys(SPACE_FLAGS, None) | {"overrides": (), "stages": 2}
        >>> space_from_flags(config_path=None, **flags).size()
        1296
    """
    data: dict[str, Any] = load_toml(config_path, table="space") if config_path else {}
    space = SpaceConfig.from_mapping(space_mapping_from_flags(data, **flags))
    space.check_bounds()
    return space


def job_config_from_flags(
    *, config_path: str | None, defaults: Mapping[str, Any] | None = None, **flags: Any
) -> JobConfig:
    """Merge the job TOML (if any) with the job and space flags into a validated job config.

    ``defaults`` (a command's own, e.g. :data:`SUBMIT_DEFAULTS`) sit below the TOML's keys,
    which sit below the flags.

    Raises:
        ValueError: a bad flag, file or value, in one line.

    Example:
        >>> flags = dict.fromkeys(SPACE_FLAGS, None) | {"overrides": ()}
        >>> job_config_from_flags(config_path=None, trials=3, epochs=1, **flags).trials
        3
        >>> job_config_from_flags(config_path=None, defaults=SUBMIT_DEFAULTS, trials=3,
        ...                       epochs=1, reference="4", **flags).reference
        4
    """
    data: dict[str, Any] = {**(defaults or {}), **(load_toml(config_path) if config_path else {})}
    if isinstance(flags.get("reference"), str):
        flags["reference"] = _scalar(flags["reference"])  # a trial number, or a word
    space = data.pop("space", {})
    if not isinstance(space, dict):
        raise ValueError("[space] must be a table of space keys")
    space_map = space_mapping_from_flags(space, **{k: flags.pop(k) for k in SPACE_FLAGS})
    return JobConfig.from_mapping(data, overrides={**flags, "space": space_map})


def space_mapping_from_flags(
    base: Mapping[str, Any],
    *,
    input_shape: str | None,
    stages: int | None,
    widths: str | None,
    depth: str | None,
    downsample: str | None,
    kernel: str | None,
    skip: str | None,
    overrides: tuple[str, ...],
) -> dict[str, Any]:
    """The space keys of ``base`` (a loaded TOML table) with the space flags applied on top.

    Example:
        >>> space_mapping_from_flags({"stages": 3}, input_shape=None, stages=None,
        ...     widths="8,16/32", depth=None, downsample=None, kernel="3,5", skip=None,
        ...     overrides=("s1.skip=none",))
        {'stages': 3, 'widths': [8, [16, 32]], 'kernel': [3, 5], 'overrides': {'s1.skip': ['none']}}
    """
    data = dict(base)
    if input_shape is not None:
        data["input"] = input_shape
    if stages is not None:
        data["stages"] = stages
        if widths is None and "widths" in data and len(data["widths"]) != stages:
            del data["widths"]  # --stages alone rescales the default widths
    if widths is not None:
        data["widths"] = [
            [_scalar(c) for c in w.split("/")] if "/" in w else _scalar(w)
            for w in widths.split(",")
        ]
    for key, value in (
        ("depth", depth),
        ("downsample", downsample),
        ("kernel", kernel),
        ("skip", skip),
    ):
        if value is not None:
            data[key] = _csv(value)
    if overrides:
        table = dict(data.get("overrides", {}))
        for item in overrides:
            key, sep, values = item.partition("=")
            if not sep:
                raise ValueError(f"--override {item!r} is not sN.KEY=V1,V2")
            table[key.strip()] = _csv(values)
        data["overrides"] = table
    return data


def _gpu_share(text: str | None) -> float | str | None:
    if text is None or text.strip() == "auto":
        return None if text is None else "auto"
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not auto or a number") from None


def _scalar(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _csv(text: str) -> list[Any]:
    return [_scalar(v) for v in text.split(",") if v.strip()]
