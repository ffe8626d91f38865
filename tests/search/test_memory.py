"""search.memory: the estimate of a tiny network by hand, the share classes, the next class."""

from __future__ import annotations

import pytest

from search.memory import (
    CUDA_CONTEXT_BYTES,
    SHARE_CLASSES,
    estimate_memory,
    next_share,
    resident_dataset_bytes,
    share_class,
)
from search.space import ArchSpec

# stem conv 1->8 on 8x8, one stage: conv 8->8 3x3 on 8x8, 2x2 max pool, head 8->10
TINY = ArchSpec.from_dict(
    {"stages": [{"downsample": "max", "kernel": 3, "skip": "none", "width": 8}]}
)


def test_the_estimate_of_a_tiny_network_matches_a_hand_count() -> None:
    # values kept for backward, per image: the input (64); the stem's conv, BN and ReLU
    # outputs (3 x 8 x 8 x 8 = 1536); the stage's conv, BN, ReLU (1536) and pool (8 x 4 x 4 =
    # 128) outputs; the pooled features (8) and the logits (10)
    values = 64 + 1536 + 1536 + 128 + 8 + 10
    # stem conv 72 + BN 16, stage conv 576 + BN 16, head 80 + 10
    params = 72 + 16 + 576 + 16 + 80 + 10
    data = resident_dataset_bytes(train_images=100, val_images=20, input_shape=(1, 8, 8))
    assert data == 120 * (64 * 4 + 8)  # fp32 images, int64 labels
    for precision, size in (("fp32", 4), ("bf16", 2)):
        est = estimate_memory(
            TINY,
            input_shape=(1, 8, 8),
            num_classes=10,
            batch_size=32,
            precision=precision,
            dataset_bytes=data,
        )
        assert est.activations == values * size * 32
        assert est.weights == params * 4 * 3  # weights, gradients, momentum in fp32
        assert (est.dataset, est.context) == (data, CUDA_CONTEXT_BYTES)
        assert est.total == est.activations + est.weights + data + CUDA_CONTEXT_BYTES
        assert est.allocated == est.total - CUDA_CONTEXT_BYTES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "unknown precision 'fp16'"),
        ({"batch_size": 0}, "batch_size 0 must be at least 1"),
        ({"dataset_bytes": -1}, "must not be negative"),
    ],
)
def test_bad_inputs_are_value_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "input_shape": (1, 8, 8),
        "num_classes": 10,
        "batch_size": 4,
        "precision": "fp32",
        "dataset_bytes": 0,
    }
    with pytest.raises(ValueError, match=message):
        estimate_memory(TINY, **{**args, **kwargs})  # type: ignore[arg-type]


def test_share_classes_round_up_to_the_smallest_that_holds_the_need() -> None:
    gpu = 80 * 2**30
    assert SHARE_CLASSES == (0.125, 0.25, 0.5, 1.0)
    assert share_class(0, gpu) == 0.125
    assert share_class(10 * 2**30, gpu) == 0.125  # exactly an eighth
    assert share_class(10 * 2**30 + 1, gpu) == 0.25
    assert share_class(21 * 2**30, gpu) == 0.5
    assert share_class(41 * 2**30, gpu) == 1.0
    assert share_class(gpu, gpu) == 1.0
    with pytest.raises(ValueError, match=r"more than one GPU's 80\.0 GiB"):
        share_class(gpu + 1, gpu)
    with pytest.raises(ValueError, match="must be positive"):
        share_class(1, 0)


def test_next_share_climbs_the_classes_and_stops_at_a_whole_gpu() -> None:
    assert [next_share(s) for s in SHARE_CLASSES] == [0.25, 0.5, 1.0, None]
    assert next_share(0.3) == 0.5  # a fixed share between classes
    assert next_share(2.0) is None
