"""A candidate's peak device memory in training, estimated before it trains, and its GPU share.

Ray's GPU fractions are logical: nothing stops four trials that each need 60 % of a GPU's
memory from sharing it. With ``gpus_per_trial = "auto"`` each trial asks for the share of a GPU
its estimate needs, rounded up to one of :data:`SHARE_CLASSES` (each distinct share is another
kind of Ray actor, and actors are only reused between trials of the same resources).

The estimate (:func:`estimate_memory`) adds what :func:`workers.train.train` keeps on the device
while it trains:

- **activations**: every layer output a training step keeps for backward
  (:func:`search.cost.arch_cost`'s ``activation_bytes``, counted per value) plus the batch's
  input, for the whole batch, at the bytes per value of the training precision (bf16 autocast
  keeps its conv, BatchNorm and ReLU outputs in bf16);
- **weights**: the parameters, their gradients and SGD's momentum buffer, all fp32;
- **dataset**: the training and validation sets, which the trainer keeps normalised on the
  device for the whole run (:func:`resident_dataset_bytes`);
- **context**: the CUDA context of the trial's process, which ``torch.cuda`` does not see.

Not counted: the caching allocator's slack, cuDNN's workspaces, the evaluation's transient
activations and the test set (moved in after the training sets are freed).

Pure arithmetic: no torch, no ray.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from search.cost import arch_cost
from search.space import ArchSpec

__all__ = [
    "CUDA_CONTEXT_BYTES",
    "PRECISION_BYTES",
    "SHARE_CLASSES",
    "MemoryEstimate",
    "estimate_memory",
    "next_share",
    "resident_dataset_bytes",
    "share_class",
]

SHARE_CLASSES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
# The CUDA context of one PyTorch process, which nvidia-smi shows and torch.cuda's allocator
# statistics do not: about 300-400 MB with CUDA >= 11.7's lazy module loading (PyTorch's
# default), as PyTorch's CUDA maintainers give it (pytorch/pytorch issues 107667 and 109888),
# rounded up to 512 MiB for the cuBLAS and cuDNN handles a training step adds. A figure from
# the literature, not one measured by poolstride: bench/gpu_check.py compares the estimates with
# what a GPU allocates.
CUDA_CONTEXT_BYTES: int = 512 * 2**20
# bytes per value of each training precision (TrainResult.precision's names)
PRECISION_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2}
_FP32 = 4
_LABEL = 8  # int64 labels
# fp32 tensors per parameter while training: the parameter, its gradient, SGD's momentum
_WEIGHT_COPIES = 3


class MemoryEstimate(NamedTuple):
    """Peak device memory of one training run, in bytes, by what holds it."""

    activations: int  # kept for backward, whole batch, training precision
    weights: int  # params + grads + optimiser state (SGD momentum: 1 buffer)
    dataset: int  # resident training + validation tensors on the device
    context: int  # CUDA context (0 for CPU)

    @property
    def total(self) -> int:
        """Everything the process holds on the device."""
        return self.activations + self.weights + self.dataset + self.context

    @property
    def allocated(self) -> int:
        """What PyTorch's allocator hands out (``torch.cuda.max_memory_allocated`` sees it):
        all but the context."""
        return self.total - self.context


def resident_dataset_bytes(
    *, train_images: int, val_images: int, input_shape: Sequence[int]
) -> int:
    """Bytes of the training and validation sets as the trainer keeps them on the device:
    images normalised to fp32, labels int64.

    Example:
        >>> resident_dataset_bytes(train_images=10, val_images=2, input_shape=(1, 8, 8))
        3168
    """
    if train_images < 0 or val_images < 0:
        raise ValueError(f"image counts {train_images}, {val_images} must not be negative")
    return (train_images + val_images) * (math.prod(input_shape) * _FP32 + _LABEL)


def estimate_memory(
    arch: ArchSpec,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    batch_size: int,
    precision: str,
    dataset_bytes: int,
    context_bytes: int = CUDA_CONTEXT_BYTES,
) -> MemoryEstimate:
    """Peak device memory of training ``arch`` at ``batch_size`` in ``precision`` (``fp32`` or
    ``bf16``) with ``dataset_bytes`` of data resident (see the module).

    Raises:
        ValueError: an unknown precision, a batch size below 1, a negative byte count, or an
            architecture that does not fit the input.

    Example:
        >>> arch = ArchSpec.from_json('{"stages": [{"downsample": "max", "kernel": 3, '
        ...                           '"skip": "none", "width": 8}]}')
        >>> est = estimate_memory(arch, input_shape=(1, 8, 8), num_classes=10, batch_size=4,
        ...                       precision="fp32", dataset_bytes=0, context_bytes=0)
        >>> est.activations, est.weights, est.total == est.allocated
        (52512, 9240, True)
    """
    if precision not in PRECISION_BYTES:
        raise ValueError(
            f"unknown precision {precision!r} (expected one of {', '.join(PRECISION_BYTES)})"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be at least 1")
    if dataset_bytes < 0 or context_bytes < 0:
        raise ValueError("dataset_bytes and context_bytes must not be negative")
    cost = arch_cost(arch, input_shape=input_shape, num_classes=num_classes)
    values = cost.activation_bytes // _FP32 + math.prod(input_shape)
    return MemoryEstimate(
        activations=values * PRECISION_BYTES[precision] * batch_size,
        weights=cost.params * _FP32 * _WEIGHT_COPIES,
        dataset=dataset_bytes,
        context=context_bytes,
    )


def share_class(need_bytes: int, device_bytes: int) -> float:
    """The smallest of :data:`SHARE_CLASSES` whose part of a ``device_bytes`` GPU holds
    ``need_bytes``.

    Raises:
        ValueError: ``need_bytes`` exceeds one GPU, or a size is not positive.

    Example:
        >>> share_class(3 * 2**30, 16 * 2**30), share_class(4 * 2**30, 16 * 2**30)
        (0.25, 0.25)
        >>> share_class(17 * 2**30, 16 * 2**30)
        Traceback (most recent call last):
        ...
        ValueError: needs 17.0 GiB of GPU memory, more than one GPU's 16.0 GiB
    """
    if device_bytes <= 0:
        raise ValueError(f"device memory {device_bytes} bytes must be positive")
    if need_bytes < 0:
        raise ValueError(f"memory need {need_bytes} bytes must not be negative")
    for share in SHARE_CLASSES:
        if need_bytes <= share * device_bytes:
            return share
    raise ValueError(
        f"needs {need_bytes / 2**30:.1f} GiB of GPU memory, "
        f"more than one GPU's {device_bytes / 2**30:.1f} GiB"
    )


def next_share(share: float) -> float | None:
    """The next of :data:`SHARE_CLASSES` above ``share`` (any share, not only a class);
    ``None`` from a whole GPU up.

    Example:
        >>> next_share(0.25), next_share(0.3), next_share(1.0)
        (0.5, 0.5, None)
    """
    return next((c for c in SHARE_CLASSES if c > share), None)
