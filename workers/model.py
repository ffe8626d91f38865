"""Architecture → ``torch.nn.Module``.

Choices are data: small registries turn a ``downsample`` or ``skip`` name into a module, and
``get_padding`` is the one place that decides padding. The architecture is a
:class:`search.space.ArchSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from search.space import ArchSpec

__all__ = [
    "Net",
    "Normalized",
    "PoolShortcut",
    "Stage",
    "build_model",
    "conv_bn_act",
    "create_downsample",
    "create_skip",
    "get_padding",
    "measure",
]

STEM_KERNEL = 3


def get_padding(kernel: int) -> int:
    """Padding that keeps the size at stride 1 and gives ``ceil(n / 2)`` at stride 2."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel {kernel} must be an odd integer >= 1")
    return kernel // 2


def conv_bn_act(
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """Conv (no bias) → BatchNorm → ReLU (ReLU left out with ``act=False``)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=get_padding(kernel), bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PoolShortcut(nn.Module):
    """Parameter-free shortcut: 2×2 average pool, then zero-pad (or cut) channels to ``cout``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.cin, self.cout = cin, cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2, ceil_mode=True)
        if self.cout > self.cin:
            return F.pad(x, (0, 0, 0, 0, 0, self.cout - self.cin))
        return x[:, : self.cout].contiguous() if self.cout < self.cin else x


_DOWNSAMPLE: dict[str, Callable[[int, int], nn.Module]] = {
    "max": lambda channels, kernel: nn.MaxPool2d(2, ceil_mode=True),
    "avg": lambda channels, kernel: nn.AvgPool2d(2, ceil_mode=True),
    # the stride sits on the stage's last conv; nothing runs after it
    "strided": lambda channels, kernel: nn.Identity(),
    "conv": lambda channels, kernel: conv_bn_act(channels, channels, kernel, stride=2),
}

_SKIP: dict[str, Callable[[int, int], nn.Module | None]] = {
    "none": lambda cin, cout: None,
    "proj": lambda cin, cout: conv_bn_act(cin, cout, 1, stride=2, act=False),
    "pool": PoolShortcut,
}


def create_downsample(name: str, *, channels: int, kernel: int) -> nn.Module:
    """The module that runs after a stage's convs to halve the map.

    Example:
        >>> create_downsample("max", channels=16, kernel=3)
        MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=True)
    """
    try:
        factory = _DOWNSAMPLE[name]
    except KeyError:
        raise ValueError(
            f"unknown downsample {name!r} (expected one of {', '.join(_DOWNSAMPLE)})"
        ) from None
    return factory(channels, kernel)


def create_skip(name: str, *, cin: int, cout: int) -> nn.Module | None:
    """The shortcut of a downsampling stage, or ``None`` for ``"none"``.

    Example:
        >>> create_skip("pool", cin=16, cout=32)
        PoolShortcut()
    """
    try:
        factory = _SKIP[name]
    except KeyError:
        raise ValueError(f"unknown skip {name!r} (expected one of {', '.join(_SKIP)})") from None
    return factory(cin, cout)


class Stage(nn.Module):
    """``depth`` convs of one kernel size, a downsample, and an optional shortcut added last."""

    def __init__(
        self, cin: int, *, downsample: str, kernel: int, skip: str, width: int, depth: int
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth {depth} and width {width} must be positive")
        convs = []
        for d in range(depth):
            stride = 2 if downsample == "strided" and d == depth - 1 else 1
            convs.append(conv_bn_act(cin if d == 0 else width, width, kernel, stride=stride))
        self.convs = nn.Sequential(*convs)
        self.downsample = create_downsample(downsample, channels=width, kernel=kernel)
        self.skip = create_skip(skip, cin=cin, cout=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.downsample(self.convs(x))
        return out if self.skip is None else out + self.skip(x)


class Net(nn.Module):
    """Stem → stages → global average pool → linear head."""

    def __init__(self, arch: ArchSpec, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        stages = arch.stages
        self.stem = conv_bn_act(in_channels, stages[0].width, STEM_KERNEL)
        blocks, cin = [], stages[0].width
        for s in stages:
            blocks.append(
                Stage(
                    cin,
                    downsample=s.downsample,
                    kernel=s.kernel,
                    skip=s.skip,
                    width=s.width,
                    depth=s.depth,
                )
            )
            cin = s.width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.head(torch.flatten(x, 1))


class Normalized(nn.Module):
    """``net`` behind a per-channel normalisation, so that it takes raw pixels (for export)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def build_model(arch: ArchSpec, *, in_channels: int, num_classes: int) -> Net:
    """Build the network of ``arch`` for ``in_channels`` and ``num_classes``.

    Example:
        >>> from search.space import ArchSpec
        >>> arch = ArchSpec.from_json('{"stages": [{"downsample": "conv", "kernel": 5, '
        ...                           '"skip": "proj", "width": 8}]}')
        >>> build_model(arch, in_channels=1, num_classes=10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    return Net(arch, in_channels=in_channels, num_classes=num_classes)


def measure(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Parameters and per-image FLOPs of ``model`` as torch counts them (one image, eval mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return {"params": params, "flops": int(counter.get_total_flops())}
