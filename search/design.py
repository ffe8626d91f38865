"""The design of a job's later phases: replicate seeds, one-choice variants and their plans.

A search samples the space to find a front; an answer to "which choice at stage k" needs
matched trainings. After the search phase a job plans them:

- ``confirm``: every front member again, with replicates ``1 .. seeds - 1``;
- ``ablate``: around each reference architecture, the reference and every variant that differs
  from it in one stage choice (:func:`one_choice_variants`), each with replicates
  ``0 .. seeds - 1``.

Replicate ``k`` of every architecture trains with one seed (:func:`replicate_seed`), so results
pair across architectures by seed. Pure: no Optuna, torch or Ray; the worker enqueues the plans
(:mod:`workers.searcher`).

Example:
    >>> from search.space import SpaceConfig
    >>> space = SpaceConfig.from_mapping({"stages": 2, "input": "1x8x8", "kernel": [3]})
    >>> reference = next(iter(space))
    >>> variants, skipped = one_choice_variants(reference, space=space, input_shape=(1, 8, 8),
    ...                                         ablate="downsample")
    >>> [(v.stage, v.from_, v.to) for v in variants][:3]
    [(1, 'max', 'avg'), (1, 'max', 'strided'), (1, 'max', 'conv')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search.space import ArchSpec, SpaceConfig, StageSpec
from search.vocabulary import (
    ABLATE_CHOICES,
    DOWNSAMPLES,
    KERNELS,
    SKIPS,
    AblateMode,
    Phase,
    StageChoice,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Planned",
    "Skipped",
    "Variant",
    "ablate_plan",
    "confirm_plan",
    "one_choice_variants",
    "pick_references",
    "replicate_seed",
]

_SEED_MODULUS = 2**31  # the seed column is 32-bit, and so is every library's seed argument


def replicate_seed(job_seed: int, replicate: int) -> int:
    """The training seed of replicate ``replicate`` of every architecture of a job seeded
    ``job_seed``: below 2**31. Search-phase candidates are replicate 0.

    Example:
        >>> replicate_seed(3, 0), replicate_seed(3, 2), replicate_seed(2**31 - 1, 5) < 2**31
        (3000009, 3000011, True)
    """
    return (job_seed * 1_000_003 + replicate) % _SEED_MODULUS


@dataclass(frozen=True)
class Variant:
    """An architecture that differs from a reference in one stage choice only.

    ``stage`` counts from 1; ``from_`` is the reference's value of ``choice`` there, ``to``
    the variant's.
    """

    stage: int
    choice: StageChoice
    from_: str | int
    to: str | int
    arch: ArchSpec


@dataclass(frozen=True)
class Skipped:
    """A one-choice variant that is not trained, and why (the space excludes the value, or the
    architecture does not fit the input)."""

    stage: int
    choice: StageChoice
    value: str | int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The plan's JSON form: ``stage``, ``choice``, ``value``, ``reason``."""
        return {
            "stage": self.stage,
            "choice": self.choice,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Planned:
    """One training a phase plans: ``arch`` at replicate ``replicate``; ``reference`` is the
    trial number of the reference architecture an ``ablate`` training varies."""

    phase: Phase
    arch: ArchSpec
    replicate: int
    reference: int | None = None


def one_choice_variants(
    reference: ArchSpec,
    *,
    space: SpaceConfig,
    input_shape: Sequence[int],
    ablate: AblateMode,
) -> tuple[list[Variant], list[Skipped]]:
    """Every variant of ``reference`` that changes one choice of ``ABLATE_CHOICES[ablate]`` at
    one stage to another value of the vocabulary, and the ones that cannot be trained.

    The values tried are all of :data:`~search.vocabulary.DOWNSAMPLES`, of
    :data:`~search.vocabulary.SKIPS`, and of :data:`~search.vocabulary.KERNELS` together with
    the space's own kernels; a value the space excludes at that stage, or a variant that does
    not fit ``input_shape``, is a :class:`Skipped` with the reason. Width and depth stay the
    reference's.

    Raises:
        ValueError: ``reference`` has another number of stages than ``space``.

    Example:
        >>> from search.space import SpaceConfig
        >>> space = SpaceConfig.from_mapping({"stages": 1, "input": "1x8x8",
        ...                                   "downsample": ["max", "avg"]})
        >>> ref = next(iter(space))
        >>> variants, skipped = one_choice_variants(ref, space=space, input_shape=(1, 8, 8),
        ...                                         ablate="downsample")
        >>> [v.to for v in variants], [s.value for s in skipped]
        (['avg'], ['strided', 'conv'])
    """
    if len(reference.stages) != len(space.stages):
        raise ValueError(
            f"the reference has {len(reference.stages)} stages, the space {len(space.stages)}"
        )
    kernels = tuple(sorted(set(KERNELS).union(*(st.kernel for st in space.stages))))
    values: dict[StageChoice, tuple[str | int, ...]] = {
        "downsample": DOWNSAMPLES,
        "kernel": kernels,
        "skip": SKIPS,
    }
    variants: list[Variant] = []
    skipped: list[Skipped] = []
    for i, (stage, allowed) in enumerate(zip(reference.stages, space.stages, strict=True), 1):
        for choice in ABLATE_CHOICES[ablate]:
            current = getattr(stage, choice)
            for value in values[choice]:
                if value == current:
                    continue
                if value not in getattr(allowed, choice):
                    reason = f"the space excludes {choice} {value} at stage {i}"
                    skipped.append(Skipped(i, choice, value, reason))
                    continue
                stages = list(reference.stages)
                stages[i - 1] = StageSpec(**{**stage.to_dict(), choice: value})
                arch = ArchSpec(tuple(stages))
                try:
                    arch.check_fits(input_shape)
                except ValueError as exc:
                    skipped.append(Skipped(i, choice, value, str(exc)))
                    continue
                variants.append(Variant(i, choice, current, value, arch))
    return variants, skipped


def confirm_plan(front: Sequence[ArchSpec], *, seeds: int) -> list[Planned]:
    """The ``confirm`` phase: each front member with replicates ``1 .. seeds - 1`` (replicate 0
    is its search-phase training).

    Example:
        >>> from search.space import SpaceConfig
        >>> arch = next(iter(SpaceConfig.from_mapping({"stages": 1})))
        >>> [p.replicate for p in confirm_plan([arch], seeds=3)]
        [1, 2]
    """
    return [Planned("confirm", arch, k) for arch in front for k in range(1, seeds)]


def ablate_plan(
    references: Sequence[tuple[int, ArchSpec]],
    *,
    space: SpaceConfig,
    input_shape: Sequence[int],
    ablate: AblateMode,
    seeds: int,
) -> tuple[list[Planned], list[Skipped]]:
    """The ``ablate`` phase: for every ``(trial number, architecture)`` reference, the
    reference and each of its one-choice variants (:func:`one_choice_variants`), with
    replicates ``seeds .. 2 * seeds - 1``.

    Fresh replicates, not the reference's first ``seeds``: those chose it (the best mean of
    the front), so they flatter it, and a variant compared on them would look worse than it
    is. On new seeds the paired differences carry no trace of the choice.

    A training two references share (a variant of one that is the other, or a variant of
    both) is planned once, for the first reference; a skipped variant is reported once.

    Example:
        >>> from search.space import SpaceConfig
        >>> space = SpaceConfig.from_mapping({"stages": 1, "input": "1x8x8", "kernel": [3],
        ...                                   "skip": ["none"]})
        >>> plan, skipped = ablate_plan([(0, next(iter(space)))], space=space,
        ...                             input_shape=(1, 8, 8), ablate="downsample", seeds=2)
        >>> len(plan), {p.reference for p in plan}, skipped
        (8, {0}, [])
    """
    planned: dict[tuple[str, int], Planned] = {}
    skipped: dict[Skipped, None] = {}  # ordered, without repeats
    for trial, reference in references:
        variants, not_trained = one_choice_variants(
            reference, space=space, input_shape=input_shape, ablate=ablate
        )
        skipped.update(dict.fromkeys(not_trained))
        for arch in (reference, *(v.arch for v in variants)):
            for k in range(seeds, 2 * seeds):
                planned.setdefault((arch.hash(), k), Planned("ablate", arch, k, trial))
    return list(planned.values()), list(skipped)


def pick_references(front: pd.DataFrame, *, count: int) -> list[tuple[int, ArchSpec]]:
    """The ``count`` members of a front of per-architecture means
    (:func:`search.query.load_front`'s ``members``) with the best mean ``val_acc``, as
    ``(trial number, architecture)``; a tie goes to the lower trial number.

    Example:
        >>> import pandas as pd
        >>> row = {"s1.downsample": "max", "s1.kernel": 3, "s1.skip": "none", "s1.width": 8,
        ...        "s1.depth": 1}
        >>> front = pd.DataFrame([{**row, "trial": 4, "val_acc": 0.8},
        ...                       {**row, "trial": 2, "val_acc": 0.9}])
        >>> [trial for trial, _ in pick_references(front, count=1)]
        [2]
    """
    ranked = front.sort_values(["val_acc", "trial"], ascending=[False, True], kind="stable")
    return [
        (int(row["trial"]), ArchSpec.from_row(row)) for row in ranked.head(count).to_dict("records")
    ]
