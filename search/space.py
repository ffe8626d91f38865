"""The search space: architectures as plain data, the space config, sampling and validation.

A network is stem → S stages → global average pool → linear head. Every stage halves the
spatial size exactly once (odd sizes round up: 7 → 4), so a stage needs an input of at least
2×2. Per stage the choices are ``downsample`` (``max``, ``avg``, ``strided``, ``conv``),
``kernel`` (odd, 3/5/7 by default), ``skip`` (``none``, ``proj``, ``pool``), ``width`` and
``depth`` (fixed by default, searchable when given several values).

This module imports neither torch nor ray.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from search._checks import INT32, integer
from search.vocabulary import (
    DOWNSAMPLES,
    KERNELS,
    SKIPS,
    STAGE_CHOICES,
    STAGE_KEYS,
    Downsample,
    Skip,
    StageKey,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "COMMON_KEYS",
    "DEFAULT_INPUT",
    "DOWNSAMPLES",
    "KERNELS",
    "SKIPS",
    "ArchSpec",
    "SpaceConfig",
    "StageChoices",
    "StageSpec",
    "default_width",
    "load_toml",
    "max_stages",
    "parse_input_shape",
    "stage_sizes",
]

DEFAULT_INPUT: tuple[int, int, int] = (1, 28, 28)
DEFAULT_STAGES = 3
DEFAULT_DEPTH = 1
_BASE_WIDTH = 32

# the stage keys a space config lists once for every stage; widths has a key of its own
# (``widths``) that lists them stage by stage
COMMON_KEYS: tuple[StageKey, ...] = tuple(k for k in STAGE_KEYS if k != "width")
_CONFIG_KEYS = ("stages", "input", "widths", "depth", "downsample", "kernel", "skip", "overrides")


class Trial(Protocol):
    """The part of ``optuna.trial.Trial`` that sampling uses (keeps optuna out of this module)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def default_width(stage: int) -> int:
    """Width of stage ``stage`` (numbered from 1) when neither the config nor the JSON gives one.

    Example:
        >>> [default_width(i) for i in (1, 2, 3)]
        [32, 64, 128]
    """
    return _BASE_WIDTH * 2 ** (stage - 1)


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, int, int]:
    """Parse ``CxHxW`` (or a 3-sequence) into a validated ``(C, H, W)`` tuple.

    Example:
        >>> parse_input_shape("3x32x32")
        (3, 32, 32)
    """
    if isinstance(text, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
        if not m:
            raise ValueError(f"input shape {text!r} is not CxHxW, e.g. 1x28x28")
        shape = tuple(int(g) for g in m.groups())
    else:
        if len(text) != 3 or not all(_is_int(v) for v in text):
            raise ValueError(f"input shape {list(text)!r} is not three integers [C, H, W]")
        shape = tuple(int(v) for v in text)
    if min(shape) < 1:
        raise ValueError(f"input shape {'x'.join(map(str, shape))} has a non-positive size")
    return shape[0], shape[1], shape[2]


def stage_sizes(input_shape: Sequence[int], stages: int) -> list[tuple[int, int]]:
    """Spatial size after the stem and after each of ``stages`` stages (ceil-halving)."""
    _, h, w = input_shape
    sizes = [(h, w)]
    for _ in range(stages):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


def max_stages(input_shape: Sequence[int]) -> int:
    """The most stages an input allows: each stage needs at least a 2×2 input.

    Example:
        >>> max_stages((1, 28, 28)), max_stages((1, 8, 8))
        (5, 3)
    """
    side = min(input_shape[1], input_shape[2])
    return math.ceil(math.log2(side)) if side > 1 else 0


def _check_fits(n_stages: int, input_shape: Sequence[int]) -> None:
    limit = max_stages(input_shape)
    if n_stages > limit:
        sizes = stage_sizes(input_shape, limit)
        h, w = sizes[-1]
        shape = "x".join(map(str, input_shape))
        raise ValueError(
            f"stage {limit + 1}: its input is {h}x{w}, which cannot be downsampled "
            f"(input {shape} allows at most {limit} stage{'s' * (limit != 1)}, got {n_stages})"
        )


def _plain(value: Any) -> Any:
    # a DataFrame row holds numpy scalars, which the integer checks refuse
    return value.item() if hasattr(value, "item") else value


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_choice(stage: int, key: str, value: object) -> None:
    """Raise ``ValueError`` naming the stage if ``value`` is not a legal ``key`` value."""
    where = f"stage {stage}"
    if key == "downsample":
        if value not in DOWNSAMPLES:
            raise ValueError(
                f"{where}: unknown downsample {value!r} (expected one of {', '.join(DOWNSAMPLES)})"
            )
    elif key == "skip":
        if value not in SKIPS:
            raise ValueError(
                f"{where}: unknown skip {value!r} (expected one of {', '.join(SKIPS)})"
            )
    elif key == "kernel":
        if not _is_int(value) or value < 1 or value % 2 == 0:  # type: ignore[operator]
            raise ValueError(f"{where}: kernel {value!r} must be an odd integer >= 1")
    elif key in ("width", "depth"):
        if not _is_int(value) or value < 1:  # type: ignore[operator]
            raise ValueError(f"{where}: {key} {value!r} must be a positive integer")
    else:
        raise ValueError(f"{where}: unknown key {key!r} (expected one of {', '.join(STAGE_KEYS)})")


@dataclass(frozen=True)
class StageSpec:
    """One stage of an architecture: its convs, how it downsamples and its shortcut."""

    downsample: Downsample
    kernel: int
    skip: Skip
    width: int
    depth: int = DEFAULT_DEPTH

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STAGE_KEYS}


@dataclass(frozen=True)
class ArchSpec:
    """An architecture as plain data, with a canonical JSON form and hash.

    Example:
        >>> arch = ArchSpec.from_dict({"stages": [{"downsample": "max", "kernel": 3,
        ...                                       "skip": "none"}]})
        >>> arch.canonical_json()
        '{"stages":[{"depth":1,"downsample":"max","kernel":3,"skip":"none","width":32}]}'
    """

    stages: tuple[StageSpec, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("an architecture needs at least one stage")
        for i, stage in enumerate(self.stages, 1):
            for key in STAGE_KEYS:
                _check_choice(i, key, getattr(stage, key))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, defaults: SpaceConfig | None = None) -> ArchSpec:
        """Build from the user-facing JSON form; missing width/depth come from ``defaults``."""
        if not isinstance(data, Mapping) or set(data) != {"stages"}:
            raise ValueError('an architecture is a JSON object {"stages": [...]} and nothing else')
        raw = data["stages"]
        if not isinstance(raw, list) or not raw:
            raise ValueError('"stages" must be a non-empty list of stage objects')
        stages = []
        for i, item in enumerate(raw, 1):
            if not isinstance(item, Mapping):
                raise ValueError(f"stage {i}: expected an object, got {item!r}")
            unknown = set(item) - set(STAGE_KEYS)
            if unknown:
                raise ValueError(
                    f"stage {i}: unknown key {sorted(unknown)[0]!r} "
                    f"(expected {', '.join(STAGE_KEYS)})"
                )
            for key in STAGE_CHOICES:
                if key not in item:
                    raise ValueError(f"stage {i}: missing {key!r}")
            fixed = defaults.stages[i - 1] if defaults and i <= len(defaults.stages) else None
            width = item.get("width", fixed.width[0] if fixed else default_width(i))
            depth = item.get("depth", fixed.depth[0] if fixed else DEFAULT_DEPTH)
            for name in STAGE_KEYS:
                _check_choice(i, name, {"width": width, "depth": depth}.get(name, item.get(name)))
            stages.append(StageSpec(item["downsample"], item["kernel"], item["skip"], width, depth))
        return cls(tuple(stages))

    @classmethod
    def from_json(cls, text: str, *, defaults: SpaceConfig | None = None) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"architecture is not valid JSON: {exc}") from None
        return cls.from_dict(data, defaults=defaults)

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [s.to_dict() for s in self.stages]}

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def params(self) -> dict[str, Any]:
        """The flat parameter form: ``{"s1.downsample": "max", "s1.kernel": 3, ...}``."""
        return {
            f"s{i}.{k}": getattr(s, k) for i, s in enumerate(self.stages, 1) for k in STAGE_KEYS
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ArchSpec:
        """The architecture of a flat row that holds every stage key (:meth:`params`' form,
        e.g. a candidate row of :func:`search.query.load_candidates`; other keys are ignored).
        Numpy scalars, as a DataFrame row holds them, count as the Python values they are.

        Example:
            >>> row = {"trial": 3, "s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none",
            ...        "s1.width": 8, "s1.depth": 1}
            >>> ArchSpec.from_row(row).params() == {k: v for k, v in row.items() if k != "trial"}
            True
        """
        n_stages = sum(1 for key in row if re.fullmatch(r"s[1-9][0-9]*\.downsample", key))
        return cls.from_dict(
            {
                "stages": [
                    {key: _plain(row[f"s{i}.{key}"]) for key in STAGE_KEYS}
                    for i in range(1, n_stages + 1)
                ]
            }
        )

    def check_fits(self, input_shape: Sequence[int]) -> None:
        """Raise ``ValueError`` if some stage would shrink the map below 1×1."""
        _check_fits(len(self.stages), input_shape)


@dataclass(frozen=True)
class StageChoices:
    """The allowed values of each choice at one stage; a single value means fixed."""

    downsample: tuple[Downsample, ...] = DOWNSAMPLES
    kernel: tuple[int, ...] = KERNELS
    skip: tuple[Skip, ...] = SKIPS
    width: tuple[int, ...] = (_BASE_WIDTH,)
    depth: tuple[int, ...] = (DEFAULT_DEPTH,)

    def size(self) -> int:
        return math.prod(len(getattr(self, k)) for k in STAGE_KEYS)

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(getattr(self, k)) for k in STAGE_KEYS}


@dataclass(frozen=True)
class SpaceConfig:
    """The search space: per stage the allowed values, and the input shape they must fit.

    Build it with :meth:`from_mapping` from a TOML table or from CLI flags (same keys):

    ``stages`` (int), ``input`` ("CxHxW"), ``widths`` (one entry per stage, an int or a list of
    choices), ``depth`` (an int or a list of choices, all stages), ``downsample``, ``kernel``,
    ``skip`` (lists of allowed values, all stages) and ``overrides`` (flat keys such as
    ``"s2.kernel" = [3, 5]`` that replace one stage's choices).

    Example:
        >>> space = SpaceConfig.from_mapping({"stages": 2, "kernel": [3]})
        >>> space.size()
        144
    """

    stages: tuple[StageChoices, ...]
    input_shape: tuple[int, int, int] = DEFAULT_INPUT

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages must be at least 1")
        for i, st in enumerate(self.stages, 1):
            for key in STAGE_KEYS:
                values = getattr(st, key)
                if not values:
                    raise ValueError(f"stage {i}: no allowed {key} values")
                if len(set(values)) != len(values):
                    raise ValueError(f"stage {i}: repeated {key} values {list(values)}")
                for v in values:
                    _check_choice(i, key, v)
        _check_fits(len(self.stages), self.input_shape)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SpaceConfig:
        """Validate and build a space from TOML/CLI keys; missing keys take the defaults."""
        unknown = set(data) - set(_CONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"unknown space key {sorted(unknown)[0]!r} (expected {', '.join(_CONFIG_KEYS)})"
            )
        input_shape = parse_input_shape(data.get("input", DEFAULT_INPUT))
        widths_raw = data.get("widths")
        n = data.get("stages")
        if n is None:
            n = len(widths_raw) if isinstance(widths_raw, list) else DEFAULT_STAGES
        if not _is_int(n) or n < 1:
            raise ValueError(f"stages {n!r} must be a positive integer")
        # before the per-stage lists are built: a huge count would build them for ever
        _check_fits(n, input_shape)
        if widths_raw is None:
            widths_raw = [default_width(i) for i in range(1, n + 1)]
        if not isinstance(widths_raw, list) or len(widths_raw) != n:
            raise ValueError(f"widths {widths_raw!r} must list one width per stage ({n} stages)")
        common = {k: _as_choices(k, data[k]) for k in COMMON_KEYS if k in data}
        stages = [StageChoices(**common, width=_as_choices("widths", w)) for w in widths_raw]
        overrides = data.get("overrides", {})
        if not isinstance(overrides, Mapping):
            raise ValueError('overrides must map keys like "s2.kernel" to lists of values')
        for key, value in overrides.items():
            m = re.fullmatch(r"s(\d+)\.(\w+)", key)
            if not m or m.group(2) not in STAGE_KEYS:
                raise ValueError(
                    f"override key {key!r} is not sN.KEY with KEY one of {', '.join(STAGE_KEYS)}"
                )
            idx = int(m.group(1))
            if not 1 <= idx <= n:
                raise ValueError(f"override {key!r} names stage {idx}, but there are {n} stages")
            stages[idx - 1] = replace(stages[idx - 1], **{m.group(2): _as_choices(key, value)})
        return cls(tuple(stages), input_shape)

    @classmethod
    def from_toml(
        cls,
        path: str | Path,
        *,
        overrides: Mapping[str, Any] | None = None,
    ) -> SpaceConfig:
        """Load a space from a TOML file (its top level, or its ``[space]`` table)."""
        return cls.from_mapping({**load_toml(path, table="space"), **(overrides or {})})

    def check_bounds(self) -> None:
        """Raise ``ValueError`` if an integer of the space is beyond 32 bits, what submit
        allows: the kernels, widths and depths go to ``ps_stages``' Integer columns, and the
        input's sizes to the trainer.

        Not part of building a space, so that a stored job's space still reads.

        Example:
            >>> SpaceConfig.from_mapping({"stages": 1, "kernel": [2**31 + 1]}).check_bounds()
            Traceback (most recent call last):
            ...
            ValueError: stage 1: kernel 2147483649 must be at most 2147483647
        """
        if max(self.input_shape) > INT32.hi:
            raise ValueError(
                f"input shape {'x'.join(map(str, self.input_shape))} has a size above {INT32.hi}"
            )
        for i, st in enumerate(self.stages, 1):
            for key in ("kernel", "width", "depth"):
                for value in getattr(st, key):
                    integer(f"stage {i}: {key}", value, maximum=INT32.hi)

    def size(self) -> int:
        """The number of distinct architectures in the space."""
        return math.prod(s.size() for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": "x".join(map(str, self.input_shape)),
            "stages": [s.to_dict() for s in self.stages],
            "size": self.size(),
        }

    def distributions(self) -> dict[str, list[Any]]:
        """Flat parameter name → choices, for every parameter that :meth:`sample` suggests.

        ``downsample``, ``kernel`` and ``skip`` are always suggested (so every study has the same
        columns); ``width`` and ``depth`` only where they have several values.
        """
        out: dict[str, list[Any]] = {}
        for i, st in enumerate(self.stages, 1):
            for key in STAGE_KEYS:
                values = list(getattr(st, key))
                if key in STAGE_CHOICES or len(values) > 1:
                    out[f"s{i}.{key}"] = values
        return out

    def sample(self, trial: Trial) -> ArchSpec:
        """Draw an architecture through ``trial.suggest_categorical`` with flat names."""
        picked = {
            name: trial.suggest_categorical(name, choices)
            for name, choices in self.distributions().items()
        }
        return self.from_params(picked)

    def from_params(self, params: Mapping[str, Any]) -> ArchSpec:
        """The architecture that flat parameters (as Optuna stores them) describe."""
        stages = []
        for i, st in enumerate(self.stages, 1):
            values = {}
            for key in STAGE_KEYS:
                name = f"s{i}.{key}"
                if name in params:
                    values[key] = params[name]
                elif len(getattr(st, key)) == 1:
                    values[key] = getattr(st, key)[0]
                else:
                    raise ValueError(f"parameter {name!r} is missing")
            stages.append(StageSpec(**values))
        return ArchSpec(tuple(stages))

    def contains(self, arch: ArchSpec) -> bool:
        """Whether every choice of ``arch`` is allowed here."""
        return len(arch.stages) == len(self.stages) and all(
            getattr(s, k) in getattr(c, k)
            for s, c in zip(arch.stages, self.stages, strict=True)
            for k in STAGE_KEYS
        )

    def __iter__(self) -> Iterator[ArchSpec]:
        """Every architecture of the space (mind :meth:`size`)."""
        per_stage = [
            [
                StageSpec(*combo)
                for combo in itertools.product(*(getattr(st, k) for k in STAGE_KEYS))
            ]
            for st in self.stages
        ]
        for combo in itertools.product(*per_stage):
            yield ArchSpec(tuple(combo))


def _as_choices(key: str, value: object) -> tuple[Any, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise ValueError(f"{key} must list at least one value")
    return tuple(values)


def load_toml(path: str | Path, *, table: str | None = None) -> dict[str, Any]:
    """Read a TOML file; with ``table``, return that table if the file has one."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    if table and isinstance(data.get(table), dict):
        return dict(data[table])
    return data
