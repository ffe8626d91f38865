"""A search job's configuration: what ``poolstride submit`` validates and the queue stores.

A job config comes from a TOML file (job keys at the top level, the space keys of
:meth:`search.space.SpaceConfig.from_mapping` in an optional ``[space]`` table) merged with CLI
flags, which win. Everything is checked here, before anything touches the database, so that bad
input writes nothing, and the same on SQLite and PostgreSQL: every integer within the range of
the column it is stored in (:mod:`search._checks`), the name without control characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal

from search._checks import INT32, SEEDS, Bounds, boolean, integer, number
from search.artifacts import KEEP_WEIGHTS, KeepWeights
from search.datasets import DEFAULT_DATASET, dataset_info
from search.objectives import DEFAULT_OBJECTIVES, validate_objectives
from search.space import COMMON_KEYS, SpaceConfig, parse_input_shape
from search.study import SAMPLERS
from search.training import TrainConfig
from search.vocabulary import ABLATE_MODES, EARLY_STOPS, AblateMode, EarlyStop

__all__ = [
    "EARLY_STOP_EPOCHS",
    "LIMITS",
    "MAX_REFERENCES",
    "MAX_SEEDS",
    "NAME_LENGTH",
    "TEST_FRACTION",
    "JobConfig",
]

# the TrainConfig fields a job sets, flat among the job keys; the rest keep their defaults
_TRAIN_KEYS = ("epochs", "batch_size", "lr", "label_smoothing", "augment")

# the range submit allows each integer job key: that of the Integer column it is stored in
# (trials: ps_jobs.trials_total; max_attempts, priority: ps_jobs'; epochs: ps_candidates.
# epochs_total), the seed's, and for the keys only the config's JSON holds the same 32 bits
LIMITS: dict[str, Bounds] = {
    "trials": INT32,
    "epochs": INT32,
    "batch_size": INT32,
    "concurrency": INT32,
    "max_attempts": INT32,
    "priority": INT32,
    "seed": SEEDS,
}
# the fewest epochs at which a job stops its search candidates early unless told otherwise:
# below 4 the first rung (1 epoch of 3 at eta 3) says too little about the last
EARLY_STOP_EPOCHS = 4
# ps_jobs.name is a String(200)
NAME_LENGTH = 200
# replicates per architecture, and references an ablation is repeated around: beyond these a
# job's extra phases would dwarf its search
MAX_SEEDS = 100
MAX_REFERENCES = 20
# the share of each class the test split holds where a dataset has none of its own; the
# validation share must leave training examples beside both
TEST_FRACTION = 0.2
# C0, DEL and C1 control characters: SQLite stores a NUL where PostgreSQL refuses it, and none
# belongs in a name that tables print
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f]")
# lone surrogates: Python's stand-ins for command-line bytes that are not UTF-8, which neither
# database can encode
_NOT_UTF8 = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class JobConfig:
    """One search: dataset, space, budget, objectives, sampler, resources and training settings.

    Build it with :meth:`from_mapping` (validates everything, as ``submit`` does);
    :meth:`to_dict` and :meth:`from_dict` round-trip exactly through JSON. ``train`` holds the
    candidates' training settings; in the mapping forms its job keys (``epochs``,
    ``batch_size``, ``lr``, ``label_smoothing``, ``augment``) sit flat among the others.

    After the search phase, ``seeds`` > 1 trains each front member ``seeds - 1`` more times
    (phase ``confirm``), and ``ablate`` other than ``"none"`` trains the one-choice variants of
    the reference architecture with as many seeds (phase ``ablate``): ``reference`` ``None``
    (``"best"`` in the mapping forms) takes the ``references`` front members with the best mean
    ``val_acc``, a trial number that trial's architecture. ``cache`` looks results up in the
    results of earlier jobs; ``val_fraction`` is the share of each class held out for
    validation where the dataset has no split of its own. ``gpus_per_trial`` ``"auto"`` gives
    each trial the share of a GPU its memory estimate needs (:mod:`search.memory`), of GPUs of
    ``gpu_memory`` GiB (``None``: detected, :func:`workers.runner.device_memory`); where no
    GPU is found it means 0.

    ``early_stop`` ``"mo-asha"`` stops search candidates at their rungs (``min_epochs *
    eta**k`` epochs) unless they rank in the best ``1/eta`` (:mod:`search.halving`); left out
    of the mapping it is ``"mo-asha"`` from :data:`EARLY_STOP_EPOCHS` epochs on, else
    ``"none"``, and the config holds the value resolved.

    Example:
        >>> cfg = JobConfig.from_mapping({"dataset": "digits", "trials": 4},
        ...                              overrides={"epochs": 2, "space": {"stages": 2}})
        >>> cfg.space.input_shape, cfg.trials, cfg.objectives
        ((1, 8, 8), 4, ('val_acc', 'flops'))
        >>> cfg.train.epochs, cfg.train.augment, cfg.to_dict()["epochs"]
        (2, False, 2)
        >>> cfg.seeds, cfg.ablate, cfg.to_dict()["reference"]
        (1, 'none', 'best')
        >>> JobConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> cfg.early_stop, JobConfig.from_mapping({"trials": 4, "epochs": 9}).early_stop
        ('none', 'mo-asha')
    """

    name: str
    dataset: str
    trials: int
    train: TrainConfig
    space: SpaceConfig
    data_dir: str | None = None
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    sampler: str = "tpe"
    seed: int = 0
    priority: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | Literal["auto"] = 0.0
    gpu_memory: float | None = None
    concurrency: int = 2
    max_attempts: int = 3
    keep_weights: KeepWeights = "front"
    seeds: int = 1
    ablate: AblateMode = "none"
    reference: int | None = None
    references: int = 1
    cache: bool = True
    val_fraction: float = 0.1
    early_stop: EarlyStop = "none"
    eta: int = 3
    min_epochs: int = 1

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None
    ) -> JobConfig:
        """Validate and build a job config; ``overrides`` (CLI flags) win, ``None`` means unset.

        ``data`` and ``overrides`` hold the keys of :meth:`to_dict`; ``space`` is a mapping of
        space keys. ``trials`` and ``epochs`` are required; the other keys default to the
        fields' defaults (the training keys to :class:`~search.training.TrainConfig`'s). The
        dataset fixes the input shape where it has one; a contradicting ``input`` is an error.
        Every integer must lie in its :data:`LIMITS` (the space's within 32 bits,
        :meth:`SpaceConfig.check_bounds`) and the name must hold no control characters.

        Raises:
            ValueError: with a one-line message naming the bad key or value.

        Example:
            >>> JobConfig.from_mapping({"trials": 2, "epochs": 1}).dataset
            'mnist5k'
            >>> JobConfig.from_mapping({"trials": 2, "epochs": 1, "seed": -1})
            Traceback (most recent call last):
            ...
            ValueError: seed -1 must be at least 0
        """
        config = cls._build(data, overrides)
        config._check_limits()
        return config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobConfig:
        """Rebuild (and re-validate) a config from :meth:`to_dict`'s form, as a job row holds it.

        The checks are :meth:`from_mapping`'s but for its limits, which submit applies: a row
        written before a limit existed (a negative seed, a priority beyond 32 bits on SQLite)
        still reads.

        Example:
            >>> cfg = JobConfig.from_mapping({"trials": 2, "epochs": 1})
            >>> JobConfig.from_dict({**cfg.to_dict(), "seed": -1}).seed
            -1
        """
        # a row written before early stopping existed ran its candidates to the end
        return cls._build({"early_stop": "none", **data}, None)

    @classmethod
    def _build(cls, data: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> JobConfig:
        if not isinstance(data, Mapping):
            raise ValueError("a job config is a table of keys")
        # the fields' defaults are the one place a job key's default is written
        merged = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        merged.update(data)
        merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
        known = {f.name for f in fields(cls) if f.name != "train"} | set(_TRAIN_KEYS)
        unknown = sorted(set(merged) - known)
        if unknown:
            hint = (
                " (space keys go in a [space] table)"
                if unknown[0] in ("stages", "widths", "input", *COMMON_KEYS, "overrides")
                else ""
            )
            raise ValueError(f"unknown job key {unknown[0]!r}{hint}")

        dataset = merged.get("dataset", DEFAULT_DATASET)
        info = dataset_info(dataset)
        data_dir = merged["data_dir"]
        if data_dir is not None and (not isinstance(data_dir, str) or not data_dir.strip()):
            raise ValueError(f"data_dir {data_dir!r} must be a path")
        if info.needs_data and data_dir is None:
            what = "the .npz file" if dataset == "npz" else "the data folder"
            raise ValueError(f"dataset {dataset} needs --data-dir/--data-path PATH ({what})")
        for key in ("trials", "epochs"):
            if key not in merged:
                raise ValueError(f"{key} is required (--{key} N)")

        name = merged.get("name", dataset)
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_LENGTH:
            raise ValueError(
                f"name {name!r} must be a non-empty string of at most {NAME_LENGTH} characters"
            )
        sampler = merged["sampler"]
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r} (expected one of {', '.join(SAMPLERS)})")
        objectives = merged["objectives"]
        if isinstance(objectives, str):
            objectives = [o.strip() for o in objectives.split(",") if o.strip()]
        if not isinstance(objectives, list | tuple):
            raise ValueError(f"objectives {objectives!r} must be a list of names")
        given = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        early_stop, eta, min_epochs = _early_stop(
            given.get("early_stop"), merged["eta"], merged["min_epochs"], merged["epochs"]
        )
        reference = _reference(merged["reference"])
        references = integer("references", merged["references"], minimum=1, maximum=MAX_REFERENCES)
        if reference is not None and references != 1:
            raise ValueError(
                f"references {references} needs reference best: one trial is one reference"
            )

        return cls(
            name=name.strip(),
            dataset=dataset,
            data_dir=data_dir,
            trials=_int(merged, "trials", minimum=1),
            train=TrainConfig(**{key: merged[key] for key in _TRAIN_KEYS if key in merged}),
            space=_space(merged.get("space", {}), dataset),
            objectives=validate_objectives(objectives),
            sampler=sampler,
            seed=_int(merged, "seed"),
            priority=_int(merged, "priority"),
            cpus_per_trial=_float(merged, "cpus_per_trial", positive=True),
            gpus_per_trial=_gpus(merged["gpus_per_trial"]),
            gpu_memory=_gpu_memory(merged["gpu_memory"]),
            concurrency=_int(merged, "concurrency", minimum=1),
            max_attempts=_int(merged, "max_attempts", minimum=1),
            keep_weights=_keep_weights(merged["keep_weights"]),
            seeds=integer("seeds", merged["seeds"], minimum=1, maximum=MAX_SEEDS),
            ablate=_ablate(merged["ablate"]),
            reference=reference,
            references=references,
            cache=boolean("cache", merged["cache"]),
            val_fraction=number(
                "val_fraction", merged["val_fraction"], positive=True, below=1 - TEST_FRACTION
            ),
            early_stop=early_stop,
            eta=eta,
            min_epochs=min_epochs,
        )

    def _check_limits(self) -> None:
        """Raise ``ValueError`` for what submit refuses beyond :meth:`_build`'s checks."""
        flat = self.to_dict()
        for key, bounds in LIMITS.items():
            integer(key, flat[key], minimum=bounds.lo, maximum=bounds.hi)
        self.space.check_bounds()
        if _NOT_UTF8.search(self.name):
            raise ValueError(f"name {self.name!r} is not valid UTF-8")
        if _UNPRINTABLE.search(self.name):
            raise ValueError(f"name {self.name!r} must not contain control characters")
        if self.data_dir is not None and "\x00" in self.data_dir:
            raise ValueError(f"data_dir {self.data_dir!r} must be a path")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, flat; ``space`` holds keys that :class:`SpaceConfig` reads back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            # the stored and printed key order of the flat form that came before ``train``:
            # epochs after trials, the other training keys before keep_weights
            if f.name == "train":
                out["epochs"] = self.train.epochs
                continue
            if f.name == "keep_weights":
                out.update({k: getattr(self.train, k) for k in _TRAIN_KEYS if k != "epochs"})
            out[f.name] = getattr(self, f.name)
        out["objectives"] = list(self.objectives)
        out["space"] = space_mapping(self.space)
        out["reference"] = "best" if self.reference is None else self.reference
        return out


def space_mapping(space: SpaceConfig) -> dict[str, Any]:
    """The ``from_mapping`` keys that rebuild ``space`` exactly (the order of values included).

    Example:
        >>> s = SpaceConfig.from_mapping({"stages": 2, "kernel": [3, 5]})
        >>> SpaceConfig.from_mapping(space_mapping(s)) == s
        True
    """
    stages = space.stages
    out: dict[str, Any] = {
        "input": "x".join(map(str, space.input_shape)),
        "stages": len(stages),
        "widths": [st.width[0] if len(st.width) == 1 else list(st.width) for st in stages],
    }
    overrides: dict[str, list[Any]] = {}
    for key in COMMON_KEYS:
        values = [getattr(st, key) for st in stages]
        if all(v == values[0] for v in values):
            out[key] = list(values[0])
        else:
            overrides.update({f"s{i}.{key}": list(v) for i, v in enumerate(values, 1)})
    if overrides:
        out["overrides"] = overrides
    return out


def _space(raw: object, dataset: str) -> SpaceConfig:
    if isinstance(raw, SpaceConfig):
        raw = space_mapping(raw)
    if not isinstance(raw, Mapping):
        raise ValueError("space must be a table of space keys")
    data = dict(raw)
    info = dataset_info(dataset)
    given = parse_input_shape(data["input"]) if "input" in data else None
    if info.input_shape is not None:
        if given is not None and given != info.input_shape:
            raise ValueError(
                f"dataset {dataset} has input {_shape(info.input_shape)}; "
                f"input {_shape(given)} contradicts it"
            )
        data["input"] = list(info.input_shape)
    elif given is None:
        if info.default_input is None:
            raise ValueError(f"dataset {dataset} needs --input CxHxW")
        data["input"] = list(info.default_input)
    return SpaceConfig.from_mapping(data)


def _keep_weights(value: object) -> KeepWeights:
    if value not in KEEP_WEIGHTS:
        raise ValueError(f"keep_weights {value!r} must be one of {', '.join(KEEP_WEIGHTS)}")
    return value


def _ablate(value: object) -> AblateMode:
    if value not in ABLATE_MODES:
        raise ValueError(f"ablate {value!r} must be one of {', '.join(ABLATE_MODES)}")
    return value


def _early_stop(
    value: object, eta: object, min_epochs: object, epochs: object
) -> tuple[EarlyStop, int, int]:
    """The early stopping, resolved (``None``: by the epochs), with its eta and min_epochs."""
    eta = integer("eta", eta, minimum=2, maximum=INT32.hi)
    min_epochs = integer("min_epochs", min_epochs, minimum=1, maximum=INT32.hi)
    if value is None:
        value = "mo-asha" if isinstance(epochs, int) and epochs >= EARLY_STOP_EPOCHS else "none"
    if value not in EARLY_STOPS:
        raise ValueError(f"early_stop {value!r} must be one of {', '.join(EARLY_STOPS)}")
    if value != "none" and isinstance(epochs, int) and min_epochs >= epochs:
        raise ValueError(
            f"min_epochs {min_epochs} must be below epochs {epochs} with early_stop {value} "
            "(or use --early-stop none)"
        )
    return value, eta, min_epochs


def _reference(value: object) -> int | None:
    """``None`` for the best front member (``"best"``), else a trial number."""
    if value is None or value == "best":
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"reference {value!r} must be best or a trial number")
    return integer("reference", value, minimum=0, maximum=INT32.hi)


def _gpus(value: object) -> float | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise ValueError(f"gpus_per_trial {value!r} must be auto or a number")
    return number("gpus_per_trial", value)


def _gpu_memory(value: object) -> float | None:
    return None if value is None else number("gpu_memory", value, positive=True)


def _shape(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def _int(data: Mapping[str, Any], key: str, *, minimum: int | None = None) -> int:
    return integer(key, data[key], minimum=minimum)


def _float(data: Mapping[str, Any], key: str, *, positive: bool = False) -> float:
    return number(key, data[key], positive=positive)
