from __future__ import annotations

import json

import optuna
import pytest

from search.space import (
    DOWNSAMPLES,
    KERNELS,
    SKIPS,
    ArchSpec,
    SpaceConfig,
    StageSpec,
    max_stages,
    parse_input_shape,
)


def _arch(*stages: dict[str, object]) -> ArchSpec:
    return ArchSpec.from_dict({"stages": list(stages)})


def _stage(**kw: object) -> dict[str, object]:
    return {"downsample": "max", "kernel": 3, "skip": "none", **kw}


def test_default_space_has_every_choice_and_its_size():
    space = SpaceConfig.from_mapping({})
    assert len(space.stages) == 3
    assert space.input_shape == (1, 28, 28)
    for st in space.stages:
        assert st.downsample == DOWNSAMPLES and st.kernel == KERNELS and st.skip == SKIPS
    assert [st.width for st in space.stages] == [(32,), (64,), (128,)]
    assert space.size() == (4 * 3 * 3) ** 3


def test_space_size_counts_searchable_width_and_depth_and_overrides():
    space = SpaceConfig.from_mapping(
        {
            "stages": 2,
            "widths": [[8, 16], 32],
            "depth": [1, 2],
            "kernel": [3, 5],
            "overrides": {"s2.downsample": ["max", "strided"]},
        }
    )
    assert space.size() == (4 * 2 * 3 * 2 * 2) * (2 * 2 * 3 * 1 * 2)
    assert len(list(space)) == space.size()
    assert len({a.hash() for a in space}) == space.size()


def test_sampling_uses_flat_names_and_stays_in_the_space():
    space = SpaceConfig.from_mapping({"stages": 2, "depth": [1, 2]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        arch = space.sample(trial)
        assert space.contains(arch)
        assert set(trial.params) == {
            "s1.downsample",
            "s1.kernel",
            "s1.skip",
            "s1.depth",
            "s2.downsample",
            "s2.kernel",
            "s2.skip",
            "s2.depth",
        }
        assert space.from_params(trial.params) == arch
        study.tell(trial, 0.0)


def test_canonical_json_and_hash_ignore_key_order_and_fill_defaults():
    a = ArchSpec.from_json('{"stages": [{"skip": "proj", "kernel": 5, "downsample": "conv"}]}')
    b = ArchSpec.from_json(
        '{"stages": [{"downsample": "conv", "kernel": 5, "skip": "proj", "width": 32, "depth": 1}]}'
    )
    assert a == b and a.hash() == b.hash()
    assert a.canonical_json() == (
        '{"stages":[{"depth":1,"downsample":"conv","kernel":5,"skip":"proj","width":32}]}'
    )
    assert ArchSpec.from_json(a.canonical_json()) == a
    c = _arch(_stage(kernel=5, downsample="conv", skip="proj", width=33))
    assert c.hash() != a.hash()


def test_missing_width_defaults_from_the_space_config():
    space = SpaceConfig.from_mapping({"stages": 2, "widths": [8, 16]})
    arch = ArchSpec.from_dict({"stages": [_stage(), _stage(depth=2)]}, defaults=space)
    assert arch.stages == (StageSpec("max", 3, "none", 8, 1), StageSpec("max", 3, "none", 16, 2))


@pytest.mark.parametrize(
    ("stage", "match"),
    [
        (_stage(downsample="median"), r"stage 2: unknown downsample 'median'"),
        (_stage(skip="dense"), r"stage 2: unknown skip 'dense'"),
        (_stage(kernel=4), r"stage 2: kernel 4 must be an odd integer"),
        (_stage(kernel=0), r"stage 2: kernel 0 must be an odd integer"),
        (_stage(kernel=-3), r"stage 2: kernel -3"),
        (_stage(width=0), r"stage 2: width 0 must be a positive integer"),
        (_stage(width=-8), r"stage 2: width -8"),
        (_stage(depth=0), r"stage 2: depth 0"),
        (_stage(kernel="3"), r"stage 2: kernel '3'"),
        (_stage(colour="red"), r"stage 2: unknown key 'colour'"),
        ({"downsample": "max", "kernel": 3}, r"stage 2: missing 'skip'"),
    ],
)
def test_invalid_stage_names_the_stage_and_value(stage, match):
    with pytest.raises(ValueError, match=match):
        _arch(_stage(), stage)


def test_too_deep_for_the_input_names_the_stage():
    arch = _arch(*[_stage()] * 6)
    arch.check_fits((1, 64, 64))
    with pytest.raises(ValueError, match=r"stage 6: its input is 1x1.*at most 5 stages"):
        arch.check_fits((1, 28, 28))
    _arch(*[_stage()] * 5).check_fits((1, 28, 28))
    with pytest.raises(ValueError, match=r"stage 4: its input is 1x1"):
        SpaceConfig.from_mapping({"stages": 4, "input": "1x8x8"})


@pytest.mark.parametrize(
    ("shape", "n"),
    [
        ((1, 28, 28), 5),
        ((3, 32, 32), 5),
        ((1, 8, 8), 3),
        ((1, 7, 9), 3),
        ((1, 2, 2), 1),
        ((1, 1, 5), 0),
    ],
)
def test_max_stages(shape, n):
    assert max_stages(shape) == n


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"stages": 0}, "stages 0 must be a positive integer"),
        ({"stages": 2, "widths": [8]}, "one width per stage"),
        ({"kernel": [3, 4]}, "stage 1: kernel 4"),
        ({"downsample": ["max", "max"]}, "repeated downsample"),
        ({"skip": []}, "skip must list at least one value"),
        ({"colour": 1}, "unknown space key 'colour'"),
        ({"overrides": {"s9.kernel": [3]}}, "names stage 9"),
        ({"overrides": {"s1.colour": [3]}}, "is not sN.KEY"),
        ({"input": "28x28"}, "is not CxHxW"),
        ({"widths": [16, [0, 8], 32]}, "stage 2: width 0"),
    ],
)
def test_invalid_space_config(data, match):
    with pytest.raises(ValueError, match=match):
        SpaceConfig.from_mapping(data)


def test_toml_config_matches_flags(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(
        'stages = 2\ninput = "3x32x32"\nwidths = [16, [32, 64]]\nkernel = [3, 5]\n'
        '[overrides]\n"s1.skip" = ["none"]\n'
    )
    from_file = SpaceConfig.from_toml(path)
    from_keys = SpaceConfig.from_mapping(
        {
            "stages": 2,
            "input": "3x32x32",
            "widths": [16, [32, 64]],
            "kernel": [3, 5],
            "overrides": {"s1.skip": ["none"]},
        }
    )
    assert from_file == from_keys
    nested = tmp_path / "job.toml"
    nested.write_text(
        'trials = 5\n[space]\nstages = 2\ninput = "3x32x32"\n'
        "widths = [16, [32, 64]]\nkernel = [3, 5]\n"
        '[space.overrides]\n"s1.skip" = ["none"]\n'
    )
    assert SpaceConfig.from_toml(nested) == from_keys


def test_parse_input_shape():
    assert parse_input_shape("3x32x32") == (3, 32, 32)
    assert parse_input_shape([1, 8, 8]) == (1, 8, 8)
    with pytest.raises(ValueError, match="non-positive"):
        parse_input_shape("0x8x8")


def test_arch_json_must_be_an_object_with_stages():
    for text, match in (
        ("[]", "JSON object"),
        ('{"stages": []}', "non-empty"),
        ("{", "not valid JSON"),
        ('{"stages": [1]}', "stage 1: expected an object"),
        ('{"stages": [], "x": 1}', "JSON object"),
    ):
        with pytest.raises(ValueError, match=match):
            ArchSpec.from_json(text)
    assert json.loads(_arch(_stage()).canonical_json())["stages"][0]["width"] == 32
