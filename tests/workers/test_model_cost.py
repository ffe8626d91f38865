"""The built module against the analytic cost model: every combination, and random architectures."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from torch import nn

from search.cost import arch_cost, layer_costs
from search.space import DOWNSAMPLES, KERNELS, SKIPS, ArchSpec, SpaceConfig, StageSpec, stage_sizes
from workers.model import (
    PoolShortcut,
    Stage,
    build_model,
    create_downsample,
    create_skip,
    get_padding,
    measure,
)

COMBOS = list(itertools.product(DOWNSAMPLES, KERNELS, SKIPS))


def _combo_arch(downsample: str, kernel: int, skip: str) -> ArchSpec:
    # stage 1 carries the combination with depth 2 (so "strided" moves the stride off the first
    # conv); stage 2 narrows the width so the pool shortcut also has to cut channels
    return ArchSpec(
        (StageSpec(downsample, kernel, skip, 8, 2), StageSpec(downsample, kernel, skip, 6, 1))
    )


def _activation_bytes(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """fp32 bytes of every leaf-layer output plus every residual sum, for one image."""
    total = 0

    def hook(module: nn.Module, args: object, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * 4

    for module in model.modules():
        leaf = not list(module.children()) and not isinstance(module, nn.Identity)
        if leaf or (isinstance(module, Stage) and module.skip is not None):
            module.register_forward_hook(hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    return total


@pytest.mark.parametrize(("downsample", "kernel", "skip"), COMBOS)
def test_every_combination_builds_trains_and_matches_the_cost_model(downsample, kernel, skip):
    torch.manual_seed(0)
    arch = _combo_arch(downsample, kernel, skip)
    model = build_model(arch, in_channels=3, num_classes=5)
    x = torch.randn(4, 3, 13, 13)
    logits = model(x)
    assert logits.shape == (4, 5)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"

    cost = arch_cost(arch, input_shape=(3, 13, 13), num_classes=5)
    assert measure(model, (3, 13, 13)) == {"params": cost.params, "flops": cost.flops}
    assert _activation_bytes(model, (3, 13, 13)) == cost.activation_bytes


def _random_arch(rng: random.Random) -> tuple[ArchSpec, tuple[int, int, int]]:
    shape = (rng.choice([1, 3]), *rng.choice([(28, 28), (32, 32), (8, 8), (17, 23), (5, 64)]))
    n = rng.randint(1, min(4, max(1, (min(shape[1:]) - 1).bit_length())))
    space = SpaceConfig.from_mapping(
        {
            "stages": n,
            "input": list(shape),
            "widths": [rng.sample([4, 6, 8, 12, 16], 2) for _ in range(n)],
            "depth": [1, 2, 3],
        }
    )
    params = {name: rng.choice(choices) for name, choices in space.distributions().items()}
    return space.from_params(params), shape


@pytest.mark.parametrize("seed", range(50))
def test_random_architectures_match_torch_counts(seed):
    arch, shape = _random_arch(random.Random(seed))
    classes = 10 if seed % 2 else 7
    model = build_model(arch, in_channels=shape[0], num_classes=classes)
    cost = arch_cost(arch, input_shape=shape, num_classes=classes)
    assert measure(model, shape) == {"params": cost.params, "flops": cost.flops}
    assert _activation_bytes(model, shape) == cost.activation_bytes

    sizes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, a, out: sizes.append(tuple(out.shape[2:])))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *shape))
    assert sizes == stage_sizes(shape, len(arch.stages))[1:]
    assert [c.out_size for c in layer_costs(arch, input_shape=shape)[1:-1]] == sizes


def _one(downsample: str, kernel: int = 3, skip: str = "none", depth: int = 1) -> ArchSpec:
    return ArchSpec((StageSpec(downsample, kernel, skip, 16, depth),))


def test_strided_has_the_params_of_max_and_its_conv_costs_a_quarter():
    shape = (3, 32, 32)
    strided = layer_costs(_one("strided"), input_shape=shape)[1]
    pooled = layer_costs(_one("max"), input_shape=shape)[1]
    assert strided.params == pooled.params
    assert strided.flops * 4 == pooled.flops
    avg = layer_costs(_one("avg"), input_shape=shape)[1]
    assert (avg.params, avg.flops) == (pooled.params, pooled.flops)


def test_conv_downsample_adds_parameters_and_proj_adds_more_than_pool():
    shape = (3, 32, 32)
    base = arch_cost(_one("max"), input_shape=shape)
    assert arch_cost(_one("conv"), input_shape=shape).params > base.params
    proj = arch_cost(_one("max", skip="proj"), input_shape=shape)
    pool = arch_cost(_one("max", skip="pool"), input_shape=shape)
    assert pool.params == base.params < proj.params


def test_three_stacked_3x3_convs_see_7x7():
    # stem + two 3×3 convs, the last one strided: three stacked 3×3 convs
    arch = _one("strided", kernel=3, depth=2)
    assert [c.receptive_field for c in layer_costs(arch, input_shape=(1, 28, 28))][:2] == [3, 7]
    assert _empirical_receptive_field(arch, (1, 28, 28)) == 7


@pytest.mark.parametrize(
    ("downsample", "kernel", "depth"),
    [
        ("avg", 3, 1),
        ("strided", 5, 2),
        ("conv", 3, 1),
        ("conv", 7, 2),
        ("avg", 5, 3),
    ],
)
def test_receptive_field_matches_gradient_support(downsample, kernel, depth):
    arch = ArchSpec(
        (StageSpec(downsample, kernel, "none", 4, depth), StageSpec("avg", 3, "none", 4, 1))
    )
    shape = (1, 64, 64)
    assert arch_cost(arch, input_shape=shape).receptive_field == _empirical_receptive_field(
        arch, shape
    )


def _empirical_receptive_field(arch: ArchSpec, shape: tuple[int, int, int]) -> int:
    """Width of the input region whose pixels change one central unit of the final map.

    Positive weights and inputs keep every ReLU open, so the gradient reaches the whole field.
    """
    model = build_model(arch, in_channels=shape[0], num_classes=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.1)
    x = torch.ones(1, *shape, requires_grad=True)
    feats = model.stages(model.stem(x))
    c = feats.shape[-1] // 2
    feats[0, :, c, c].sum().backward()
    cols = (x.grad[0].abs().sum(dim=(0, 1)) > 0).nonzero().flatten()
    return int(cols.max() - cols.min() + 1)


def test_factories_reject_unknown_names():
    with pytest.raises(ValueError, match="unknown downsample 'median'"):
        create_downsample("median", channels=4, kernel=3)
    with pytest.raises(ValueError, match="unknown skip 'dense'"):
        create_skip("dense", cin=4, cout=4)
    with pytest.raises(ValueError, match="kernel 4"):
        get_padding(4)
    assert create_skip("none", cin=4, cout=8) is None


def test_pool_shortcut_pads_and_cuts_channels():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    wide = PoolShortcut(3, 5)(x)
    assert wide.shape == (2, 5, 3, 3) and (wide[:, 3:] == 0).all()
    assert torch.equal(PoolShortcut(3, 2)(x), wide[:, :2])
