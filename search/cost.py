"""Analytic cost of an architecture, without torch.

The network is the one ``workers.model.build_model`` builds: a 3×3 stem conv to the first stage's
width, the stages, global average pooling and a linear head. Every conv has no bias and is
followed by BatchNorm (2 parameters per channel) and, except the shortcut projection, ReLU.

What counts:

- **params**: every trainable parameter (conv weights, BatchNorm weight and bias, the head's
  weight and bias). BatchNorm running statistics are buffers, not parameters.
- **flops**: per image, 2 × multiply-accumulates of the convolutions and the linear layer, as
  ``torch.utils.flop_counter.FlopCounterMode`` counts them. Bias additions, BatchNorm, ReLU,
  pooling and the residual sum are not counted.
- **activation_bytes**: per image, fp32 bytes of every layer output a training forward pass keeps:
  each conv, BatchNorm, ReLU and pooling output, each shortcut output and residual sum, the pooled
  feature vector and the logits.
- **receptive_field**: side, in input pixels, of the region that one unit of the final feature map
  sees along the main path (the shortcuts never see more).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from search.space import ArchSpec, stage_sizes

__all__ = ["STEM_KERNEL", "Cost", "LayerCost", "arch_cost", "layer_costs"]

STEM_KERNEL = 3
_BYTES = 4  # fp32


class Cost(NamedTuple):
    """Whole-network cost per image."""

    params: int
    flops: int
    activation_bytes: int
    receptive_field: int


class LayerCost(NamedTuple):
    """Cost of one part of the network: ``stem``, ``s1`` … ``sN`` or ``head``."""

    name: str
    in_channels: int
    out_channels: int
    out_size: tuple[int, int]
    params: int
    flops: int
    activation_bytes: int
    receptive_field: int


class _Walk:
    """Accumulates the cost of consecutive layers; ``jump`` is the input-pixel stride."""

    def __init__(self, receptive_field: int = 1, jump: int = 1) -> None:
        self.params = self.flops = self.elements = 0
        self.rf, self.jump = receptive_field, jump

    def conv(
        self,
        cin: int,
        cout: int,
        k: int,
        out: tuple[int, int],
        *,
        stride: int = 1,
        relu: bool = True,
        main: bool = True,
    ) -> None:
        self.params += cin * cout * k * k + 2 * cout
        self.flops += 2 * out[0] * out[1] * cin * cout * k * k
        self.elements += (3 if relu else 2) * cout * out[0] * out[1]
        if main:
            self.rf += (k - 1) * self.jump
            self.jump *= stride

    def pool(self, channels: int, out: tuple[int, int]) -> None:
        self.elements += channels * out[0] * out[1]
        self.rf += self.jump
        self.jump *= 2


def layer_costs(
    arch: ArchSpec,
    *,
    input_shape: Sequence[int],
    num_classes: int = 10,
) -> list[LayerCost]:
    """Per-part costs of ``arch`` on ``input_shape`` (C, H, W), in network order.

    Raises:
        ValueError: if the architecture is too deep for the input.

    Example:
        >>> arch = ArchSpec.from_json('{"stages": [{"downsample": "max", "kernel": 3, '
        ...                           '"skip": "none", "width": 8}]}')
        >>> [(c.name, c.params) for c in layer_costs(arch, input_shape=(1, 8, 8))]
        [('stem', 88), ('s1', 592), ('head', 90)]
    """
    arch.check_fits(input_shape)
    if num_classes < 1:
        raise ValueError(f"num_classes {num_classes} must be positive")
    sizes = stage_sizes(input_shape, len(arch.stages))
    out: list[LayerCost] = []

    def record(name: str, walk: _Walk, cin: int, cout: int, size: tuple[int, int]) -> None:
        out.append(
            LayerCost(
                name, cin, cout, size, walk.params, walk.flops, walk.elements * _BYTES, walk.rf
            )
        )

    channels, width0 = input_shape[0], arch.stages[0].width
    walk = _Walk()
    walk.conv(channels, width0, STEM_KERNEL, sizes[0])
    record("stem", walk, channels, width0, sizes[0])
    channels = width0

    for i, stage in enumerate(arch.stages, 1):
        walk = _Walk(walk.rf, walk.jump)
        size_in, size_out = sizes[i - 1], sizes[i]
        k, w = stage.kernel, stage.width
        cin = channels
        for d in range(stage.depth):
            last = d == stage.depth - 1
            strided = last and stage.downsample == "strided"
            walk.conv(cin, w, k, size_out if strided else size_in, stride=2 if strided else 1)
            cin = w
        if stage.downsample in ("max", "avg"):
            walk.pool(w, size_out)
        elif stage.downsample == "conv":
            walk.conv(w, w, k, size_out, stride=2)
        if stage.skip == "proj":
            walk.conv(channels, w, 1, size_out, relu=False, main=False)
        if stage.skip != "none":
            # shortcut output (the projection's BN output is counted above) and the sum
            walk.elements += (2 if stage.skip == "pool" else 1) * w * size_out[0] * size_out[1]
        record(f"s{i}", walk, channels, w, size_out)
        channels = w

    walk = _Walk(walk.rf, walk.jump)
    walk.params = channels * num_classes + num_classes
    walk.flops = 2 * channels * num_classes
    walk.elements = channels + num_classes
    record("head", walk, channels, num_classes, (1, 1))
    return out


def arch_cost(arch: ArchSpec, *, input_shape: Sequence[int], num_classes: int = 10) -> Cost:
    """Params, FLOPs, activation bytes (all per image) and receptive field of ``arch``.

    Example:
        >>> arch = ArchSpec.from_json('{"stages": [{"downsample": "strided", "kernel": 3, '
        ...                           '"skip": "none", "depth": 2}]}')
        >>> arch_cost(arch, input_shape=(1, 28, 28)).receptive_field
        7
    """
    layers = layer_costs(arch, input_shape=input_shape, num_classes=num_classes)
    return Cost(
        params=sum(c.params for c in layers),
        flops=sum(c.flops for c in layers),
        activation_bytes=sum(c.activation_bytes for c in layers),
        receptive_field=layers[-1].receptive_field,
    )
