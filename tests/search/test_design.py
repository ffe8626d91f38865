"""search.design: one-choice variants, what is skipped and why, replicate seeds and the plans."""

from __future__ import annotations

import pandas as pd
import pytest

from search.design import (
    ablate_plan,
    confirm_plan,
    one_choice_variants,
    pick_references,
    replicate_seed,
)
from search.space import ArchSpec, SpaceConfig
from search.vocabulary import ABLATE_MODES, STAGE_KEYS

SPACE = SpaceConfig.from_mapping({"stages": 3, "input": "1x28x28", "widths": [8, 16, 32]})


def _arch(*stages: tuple[str, int, str], widths: tuple[int, ...] = (8, 16, 32)) -> ArchSpec:
    return ArchSpec.from_dict(
        {
            "stages": [
                {"downsample": d, "kernel": k, "skip": s, "width": w}
                for (d, k, s), w in zip(stages, widths, strict=True)
            ]
        }
    )


REFERENCE = _arch(("max", 3, "none"), ("strided", 5, "proj"), ("avg", 7, "pool"))


def _differences(a: ArchSpec, b: ArchSpec) -> list[tuple[int, str, object, object]]:
    return [
        (i, key, getattr(sa, key), getattr(sb, key))
        for i, (sa, sb) in enumerate(zip(a.stages, b.stages, strict=True), 1)
        for key in STAGE_KEYS
        if getattr(sa, key) != getattr(sb, key)
    ]


@pytest.mark.parametrize("ablate", ABLATE_MODES)
def test_every_variant_differs_from_the_reference_in_exactly_one_choice(ablate) -> None:
    variants, skipped = one_choice_variants(
        REFERENCE, space=SPACE, input_shape=(1, 28, 28), ablate=ablate
    )
    assert skipped == []  # the default space allows every value
    for v in variants:
        assert _differences(REFERENCE, v.arch) == [(v.stage, v.choice, v.from_, v.to)]
        assert v.from_ == getattr(REFERENCE.stages[v.stage - 1], v.choice)
    # every alternative value once: 3 downsamples, 2 kernels, 2 skips per stage
    per_stage = {"none": 0, "downsample": 3, "all": 3 + 2 + 2}[ablate]
    assert len(variants) == 3 * per_stage
    assert len({v.arch.hash() for v in variants}) == len(variants)
    assert REFERENCE.hash() not in {v.arch.hash() for v in variants}
    if ablate == "downsample":
        assert {v.choice for v in variants} == {"downsample"}
        assert sorted(v.to for v in variants if v.stage == 2) == ["avg", "conv", "max"]


def test_values_the_space_excludes_are_skipped_with_the_reason() -> None:
    space = SpaceConfig.from_mapping(
        {
            "stages": 3,
            "widths": [8, 16, 32],
            "kernel": [3, 5, 7, 9],
            "overrides": {"s2.downsample": ["max", "strided"], "s3.skip": ["none", "pool"]},
        }
    )
    variants, skipped = one_choice_variants(
        REFERENCE, space=space, input_shape=(1, 28, 28), ablate="all"
    )
    assert [(s.stage, s.choice, s.value, s.reason) for s in skipped] == [
        (2, "downsample", "avg", "the space excludes downsample avg at stage 2"),
        (2, "downsample", "conv", "the space excludes downsample conv at stage 2"),
        (3, "skip", "proj", "the space excludes skip proj at stage 3"),
    ]
    assert skipped[0].to_dict() == {
        "stage": 2,
        "choice": "downsample",
        "value": "avg",
        "reason": "the space excludes downsample avg at stage 2",
    }
    # the space's own kernel 9 is an alternative beside the vocabulary's 3, 5 and 7
    assert sorted(v.to for v in variants if v.stage == 1 and v.choice == "kernel") == [5, 7, 9]
    tried = {(v.stage, v.choice, v.to) for v in variants} | {
        (s.stage, s.choice, s.value) for s in skipped
    }
    assert len(tried) == len(variants) + len(skipped) == 3 * (3 + 3 + 2)


def test_a_variant_too_deep_for_the_input_is_skipped_with_the_reason() -> None:
    # the data the worker loaded is smaller than the shape the space was declared for
    space = SpaceConfig.from_mapping({"stages": 4, "input": "1x16x16", "widths": [4, 4, 4, 4]})
    reference = next(iter(space))
    variants, skipped = one_choice_variants(
        reference, space=space, input_shape=(1, 4, 4), ablate="downsample"
    )
    assert variants == []
    assert len(skipped) == 4 * 3
    assert {s.reason for s in skipped} == {
        "stage 3: its input is 1x1, which cannot be downsampled (input 1x4x4 allows at most "
        "2 stages, got 4)"
    }


def test_a_reference_of_another_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="the reference has 3 stages, the space 2"):
        one_choice_variants(
            REFERENCE,
            space=SpaceConfig.from_mapping({"stages": 2}),
            input_shape=(1, 28, 28),
            ablate="all",
        )


def test_replicate_seeds_pair_across_architectures_and_fit_32_bits() -> None:
    seeds = [replicate_seed(7, k) for k in range(5)]
    assert len(set(seeds)) == 5
    assert replicate_seed(7, 0) == (7 * 1_000_003) % 2**31
    assert all(0 <= replicate_seed(2**31 - 1, k) < 2**31 for k in range(100))
    assert replicate_seed(7, 1) != replicate_seed(8, 1)


def test_confirm_plans_the_extra_replicates_of_each_front_member() -> None:
    other = _arch(("avg", 3, "none"), ("strided", 5, "proj"), ("avg", 7, "pool"))
    plan = confirm_plan([REFERENCE, other], seeds=3)
    assert [(p.phase, p.arch, p.replicate, p.reference) for p in plan] == [
        ("confirm", REFERENCE, 1, None),
        ("confirm", REFERENCE, 2, None),
        ("confirm", other, 1, None),
        ("confirm", other, 2, None),
    ]
    assert confirm_plan([REFERENCE], seeds=1) == []


def test_ablation_plans_each_training_once_across_references() -> None:
    # the second reference is a one-choice variant of the first: they share trainings
    second = _arch(("avg", 3, "none"), ("strided", 5, "proj"), ("avg", 7, "pool"))
    plan, skipped = ablate_plan(
        [(4, REFERENCE), (9, second)],
        space=SPACE,
        input_shape=(1, 28, 28),
        ablate="downsample",
        seeds=2,
    )
    keys = [(p.arch.hash(), p.replicate) for p in plan]
    assert len(keys) == len(set(keys))
    assert skipped == []
    archs = {p.arch.hash(): p for p in plan}
    # each reference brings itself and 9 variants; they share each other and the two other
    # stage-1 downsamples
    assert len(archs) == 10 + 10 - 4
    # fresh seeds: not the ones the references were chosen by
    assert {p.replicate for p in plan} == {2, 3}
    assert archs[REFERENCE.hash()].reference == 4 and archs[second.hash()].reference == 4
    own = [p for p in plan if p.reference == 9]
    assert own and all(len(_differences(second, p.arch)) == 1 for p in own)
    assert {p.phase for p in plan} == {"ablate"}


def test_the_references_are_the_most_accurate_front_members() -> None:
    rows = [
        {**REFERENCE.params(), "trial": 5, "val_acc": 0.7},
        {**REFERENCE.params(), "trial": 3, "val_acc": 0.9},
        {**REFERENCE.params(), "trial": 1, "val_acc": 0.9},
        {**REFERENCE.params(), "trial": 0, "val_acc": 0.8},
    ]
    picked = pick_references(pd.DataFrame(rows), count=3)
    assert [trial for trial, _ in picked] == [1, 3, 0]
    assert all(arch == REFERENCE for _, arch in picked)
    assert len(pick_references(pd.DataFrame(rows), count=20)) == 4
