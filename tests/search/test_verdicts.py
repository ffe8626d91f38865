"""Verdicts of one-choice ablations on results of a seeded fake training (no real training).

``evaluate(arch, seed)`` stands in for a training: a base accuracy, a shift shared by every
architecture trained with that seed (the same data order and initialisation stream), an
effect planted in one choice, and noise of each (architecture, seed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from search.pareto import architecture_means
from search.space import ArchSpec
from search.verdicts import (
    ablation_effects,
    describe_verdict,
    paired_interval,
    recommendations,
    verdict,
)
from search.vocabulary import DOWNSAMPLES, KERNELS, SKIPS, VERDICTS

REFERENCE = ArchSpec.from_dict(
    {
        "stages": [
            {"downsample": "max", "kernel": 3, "skip": "none", "width": 8 * 2**i} for i in range(3)
        ]
    }
)
Evaluate = Callable[[ArchSpec, int], float]


def one_choice_variants(reference: ArchSpec) -> list[ArchSpec]:
    """Every architecture that differs from ``reference`` in one stage choice."""
    out = []
    for i in range(len(reference.stages)):
        for key, values in (("downsample", DOWNSAMPLES), ("kernel", KERNELS), ("skip", SKIPS)):
            for value in values:
                stages = [s.to_dict() for s in reference.stages]
                if stages[i][key] != value:
                    stages[i][key] = value
                    out.append(ArchSpec.from_dict({"stages": stages}))
    return out


def flops_of(arch: ArchSpec) -> int:
    # cheaper with strided or conv downsampling, dearer with larger kernels
    factor = {"max": 1.0, "avg": 1.0, "strided": 0.6, "conv": 0.8}
    return int(sum(1000 * factor[s.downsample] * s.kernel**2 / 9 for s in arch.stages))


def fake_evaluate(*, effect: float, noise: float, rng_seed: int) -> Evaluate:
    """A training whose stage-2 ``strided`` changes val_acc by ``effect``, nothing else does."""

    def evaluate(arch: ArchSpec, seed: int) -> float:
        digest = hashlib.sha256(f"{rng_seed}/{arch.hash()}/{seed}".encode()).digest()
        rng = np.random.default_rng(list(digest[:8]))
        shared = np.random.default_rng([rng_seed, seed]).normal(0.0, 0.02)
        planted = effect if arch.stages[1].downsample == "strided" else 0.0
        return float(0.9 + shared + planted + rng.normal(0.0, noise))

    return evaluate


def frame_of(archs: Sequence[ArchSpec], seeds: Sequence[int], evaluate: Evaluate) -> pd.DataFrame:
    """Candidate rows as load_candidates returns them: every architecture with every seed."""
    rows: list[dict[str, Any]] = []
    for replicate, seed in enumerate(seeds):
        for arch in archs:
            rows.append(
                {
                    "trial": len(rows),
                    "state": "complete",
                    **arch.params(),
                    "val_acc": evaluate(arch, seed),
                    "flops": flops_of(arch),
                    "params": 100 * sum(s.kernel**2 for s in arch.stages),
                    "arch_hash": arch.hash(),
                    "seed": seed,
                    "replicate": replicate,
                }
            )
    return pd.DataFrame(rows)


def effect_of(effects: pd.DataFrame, stage: int, choice: str, to: object) -> dict[str, Any]:
    hit = effects[(effects.stage == stage) & (effects.choice == choice) & (effects.to == to)]
    assert len(hit) == 1, (stage, choice, to)
    return hit.iloc[0].to_dict()


def test_a_planted_effect_is_named_with_its_sign_and_an_interval_without_zero() -> None:
    evaluate = fake_evaluate(effect=-0.05, noise=0.01, rng_seed=7)
    frame = frame_of([REFERENCE, *one_choice_variants(REFERENCE)], range(5), evaluate)
    effects = ablation_effects(frame, references=[0])
    # every one-choice variant is there, once: 3 stages x (3 downsamples + 2 kernels + 2 skips)
    assert len(effects) == 3 * 7
    strided = effect_of(effects, 2, "downsample", "strided")
    assert (strided["from"], strided["n"], strided["verdict"]) == ("max", 5, "worse")
    assert strided["ci_low"] < -0.05 < strided["ci_high"] < 0
    assert strided["flops_ratio"] == pytest.approx(
        flops_of(ArchSpec.from_row(frame.iloc[strided["variant"]].to_dict())) / flops_of(REFERENCE)
    )
    assert strided["text"].startswith("stage 2: strided instead of max: -")
    assert strided["text"].endswith("% FLOPs: cheaper and worse")
    # the same change at stage 1 plants nothing: the paired difference is the noise alone
    assert abs(effect_of(effects, 1, "downsample", "strided")["delta"]) < 0.03
    assert set(effects["verdict"]) <= set(VERDICTS)
    assert effects["sign_agrees"].isna().all()  # one reference


def test_intervals_of_no_effect_cover_zero_in_at_least_90_percent_of_200_runs() -> None:
    covered = 0
    variant = one_choice_variants(REFERENCE)[0]
    for run in range(200):
        evaluate = fake_evaluate(effect=0.0, noise=0.015, rng_seed=1000 + run)
        frame = frame_of([REFERENCE, variant], range(3), evaluate)
        (row,) = ablation_effects(frame, references=[0]).to_dict("records")
        assert row["n"] == 3
        covered += row["ci_low"] <= 0 <= row["ci_high"]
    # nominally 95 %: 190 of 200 on average; a normal quantile instead of Student's t (three
    # seeds: 1.96 instead of 4.30) would cover about 80 %
    assert 180 <= covered <= 198


def test_fewer_than_three_seeds_never_give_an_interval() -> None:
    evaluate = fake_evaluate(effect=-0.05, noise=0.0, rng_seed=3)
    for seeds in ([11], [11, 12]):
        frame = frame_of([REFERENCE, *one_choice_variants(REFERENCE)], seeds, evaluate)
        effects = ablation_effects(frame, references=[0])
        assert effects["ci_low"].isna().all() and effects["ci_high"].isna().all()
        assert effects["half_width"].isna().all()
        assert set(effects["verdict"]) == {"too few seeds"}
        strided = effect_of(effects, 2, "downsample", "strided")
        assert strided["delta"] == pytest.approx(-0.05)
        n = len(seeds)
        assert strided["text"] == (
            f"stage 2: strided instead of max: -5.0 pt ({n} seed{'s' * (n > 1)}: too few seeds "
            f"for an interval), -13 % FLOPs: cheaper"
        )
        assert not any("[" in text for text in effects["text"])


def test_seeds_pair_by_value_and_a_cached_copy_counts_once() -> None:
    evaluate = fake_evaluate(effect=-0.05, noise=0.01, rng_seed=5)
    variant = one_choice_variants(REFERENCE)[0]  # stage 1 avg
    frame = frame_of([REFERENCE, variant], [1, 2, 3, 4], evaluate)
    # the variant's seed 4 is missing and its seed 1 was served again by the cache
    frame = frame[~((frame.arch_hash == variant.hash()) & (frame.seed == 4))]
    copy = frame[(frame.arch_hash == variant.hash()) & (frame.seed == 1)].assign(trial=99)
    frame = pd.concat([frame, copy], ignore_index=True)
    (row,) = ablation_effects(frame, references=[0]).to_dict("records")
    by = {(r.arch_hash, r.seed): r.val_acc for r in frame.itertuples()}
    diffs = [by[variant.hash(), s] - by[REFERENCE.hash(), s] for s in (1, 2, 3)]
    assert row["n"] == 3
    assert (row["delta"], row["ci_low"], row["ci_high"]) == pytest.approx(paired_interval(diffs))
    means = architecture_means(frame, ["val_acc", "flops"]).set_index("arch_hash")
    assert means.loc[variant.hash(), "n"] == 3
    assert means.loc[variant.hash(), "val_acc"] == pytest.approx(
        np.mean([by[variant.hash(), s] for s in (1, 2, 3)])
    )
    assert means.loc[variant.hash(), "trials"] == sorted(
        frame.trial[frame.arch_hash == variant.hash()]
    )


def test_the_t_interval_by_hand_and_the_verdict_rules() -> None:
    diffs = [0.01, 0.03, 0.02, 0.04]
    mean, lo, hi = paired_interval(diffs)
    half = 3.182446305284263 * np.std(diffs, ddof=1) / 2  # t(0.975, 3 df), sqrt(4)
    assert (mean, lo, hi) == pytest.approx((0.025, 0.025 - half, 0.025 + half))
    assert verdict(4, lo, hi) == "better"
    assert verdict(4, -hi, -lo) == "worse"
    assert verdict(4, -0.01, 0.01) == "no detectable difference"
    assert verdict(2, 0.01, 0.02) == "too few seeds"


def test_sentences_of_each_verdict() -> None:
    base = {"stage": 3, "choice": "downsample", "from": "max", "to": "avg", "n": 5}
    same = describe_verdict(
        {
            **base,
            "delta": 0.001,
            "ci_low": -0.004,
            "ci_high": 0.006,
            "cost_change": 0.0,
            "verdict": "no detectable difference",
        }
    )
    assert same == (
        "stage 3: avg instead of max: no detectable difference (+0.1 pt [-0.4, +0.6]), same cost"
    )
    better = describe_verdict(
        {
            **base,
            "choice": "kernel",
            "from": 3,
            "to": 5,
            "delta": 0.012,
            "ci_low": 0.004,
            "ci_high": 0.02,
            "cost_change": 1.78,
            "verdict": "better",
            "sign_agrees": False,
        }
    )
    assert better == (
        "stage 3: kernel 5 instead of 3: +1.2 pt [+0.4, +2.0], +178 % FLOPs: costlier and "
        "better; the sign differs around another reference"
    )


def test_the_sign_is_compared_across_references() -> None:
    evaluate = fake_evaluate(effect=-0.05, noise=0.005, rng_seed=11)
    other = ArchSpec.from_dict({"stages": [{**s.to_dict(), "kernel": 5} for s in REFERENCE.stages]})
    archs = [REFERENCE, *one_choice_variants(REFERENCE), other, *one_choice_variants(other)]
    frame = frame_of(list(dict.fromkeys(archs)), range(4), evaluate)
    second = int(frame.trial[frame.arch_hash == other.hash()].min())
    effects = ablation_effects(frame, references=[0, second])
    assert effects["reference"].unique().tolist() == [0, second]
    strided = effects[
        (effects.stage == 2) & (effects.choice == "downsample") & (effects.to == "strided")
    ]
    assert strided["sign_agrees"].tolist() == [True, True]
    assert strided["text"].str.endswith("; the same sign around the other references").all()
    # kernel 3 -> 5 at stage 1 is measured around the first reference only (the second has 5)
    assert effect_of(effects[effects.reference == 0], 1, "kernel", 5)["sign_agrees"] is None


def test_recommendations_take_the_cheapest_value_within_the_interval_of_the_best() -> None:
    # stage 1: kernel 5 is 3 points better than 3 and 7. Stage 2: avg and conv are 2 points
    # better than max, conv at 7 % fewer FLOPs; strided is the cheapest and 5 points worse
    bonus = {(0, "kernel", 5): 0.03, (1, "downsample", "avg"): 0.02}
    bonus |= {(1, "downsample", "conv"): 0.02}
    planted = fake_evaluate(effect=-0.05, noise=0.004, rng_seed=2)

    def evaluate(arch: ArchSpec, seed: int) -> float:
        return planted(arch, seed) + sum(
            bonus.get((i, key, getattr(s, key)), 0.0)
            for i, s in enumerate(arch.stages)
            for key in ("downsample", "kernel")
        )

    frame = frame_of([REFERENCE, *one_choice_variants(REFERENCE)], range(6), evaluate)
    table = recommendations(frame, ablation_effects(frame, references=[0]))
    assert table["stage"].tolist() == [1, 2, 3]
    stage1, stage2 = table.iloc[0].to_dict(), table.iloc[1].to_dict()
    # kernel 3 is detectably worse than 5: the cheaper kernel is not offered
    assert (stage1["accuracy"]["kernel"], stage1["cheapest"]["kernel"]) == (5, 5)
    # whichever of avg and conv measured better, conv is within its interval and cheaper;
    # strided, cheaper still, is detectably worse
    best = stage2["accuracy"]["downsample"]
    assert (best in ("avg", "conv"), stage2["cheapest"]["downsample"]) == (True, "conv")
    assert set(stage2["accuracy"]) == {"downsample", "kernel", "skip"}
    assert stage2["text"].startswith(f"stage 2: for accuracy {best}, kernel ")
    note = "conv (-7 % FLOPs)" if best == "avg" else "conv,"
    assert f"; cheapest within the interval of the best: {note}" in stage2["text"]


def test_a_reference_that_is_not_complete_is_refused() -> None:
    frame = frame_of([REFERENCE], range(3), fake_evaluate(effect=0, noise=0.01, rng_seed=1))
    with pytest.raises(ValueError, match="reference trial 42 is not a complete candidate"):
        ablation_effects(frame, references=[42])
    empty = ablation_effects(frame, references=[0])
    assert empty.empty and recommendations(frame, empty).empty


def test_a_value_the_reference_beats_is_never_the_cheapest_choice() -> None:
    # stage 3: avg measures best but pairs noisily; strided is cheaper and detectably worse than
    # the reference max, yet its noisy pairing with avg alone would not tell it from avg
    ref = [0.900, 0.910, 0.905, 0.895]
    avg_shift = [0.012, -0.010, 0.015, -0.008]
    values = {"max": ref, "avg": [r + d for r, d in zip(ref, avg_shift, strict=True)]}
    values["strided"] = [
        r - 0.003 + d for r, d in zip(ref, [0.0004, -0.0003, 0.0, 0.0002], strict=True)
    ]

    def stage3(downsample: str) -> ArchSpec:
        stages = [s.to_dict() for s in REFERENCE.stages]
        stages[2]["downsample"] = downsample
        return ArchSpec.from_dict({"stages": stages})

    archs = {d: stage3(d) for d in values}
    by_hash = {archs[d].hash(): v for d, v in values.items()}
    frame = frame_of(list(archs.values()), range(4), lambda a, seed: by_hash[a.hash()][seed])
    effects = ablation_effects(frame, references=[0])
    assert effect_of(effects, 3, "downsample", "strided")["verdict"] == "worse"
    (row,) = recommendations(frame, effects).query("stage == 3").to_dict("records")
    assert row["accuracy"]["downsample"] == "avg"
    # max and avg cost the same: the more accurate of them, never the beaten strided
    assert row["cheapest"]["downsample"] == "avg"


def test_a_value_with_too_few_seeds_is_left_out_of_the_recommendation() -> None:
    # stage 2: avg and conv are 2 points better than max, strided 5 worse; conv kept 2 seeds
    bonus = {"avg": 0.02, "conv": 0.02}
    planted = fake_evaluate(effect=-0.05, noise=0.004, rng_seed=2)

    def evaluate(arch: ArchSpec, seed: int) -> float:
        return planted(arch, seed) + bonus.get(arch.stages[1].downsample, 0.0)

    frame = frame_of([REFERENCE, *one_choice_variants(REFERENCE)], range(6), evaluate)
    conv = frame["s2.downsample"] == "conv"
    frame = frame[~(conv & (frame["seed"] >= 2))]
    (row,) = (
        recommendations(frame, ablation_effects(frame, references=[0]))
        .query("stage == 2")
        .to_dict("records")
    )
    # conv (the cheaper of the two) is not chosen on two samples, nor does it block the rest
    assert (row["accuracy"]["downsample"], row["cheapest"]["downsample"]) == ("avg", "avg")
    assert row["text"].endswith("(values with under 3 seeds left out)")
