"""The trainer: one candidate and one frozen hyperparameter object in, a typed result out.

Flat and fast, in the style of airbench: the whole dataset is normalised and moved to the device
once, each epoch's permutation is drawn there and batches are cut from it, flip + crop
augmentation runs per batch on the device, and the loss is accumulated on the device and read
once per epoch, so a training step does no host work beyond launching kernels. On CUDA it adds
bf16 autocast, channels_last and CUDA-event timing; on CPU it times with ``perf_counter`` and is
deterministic for a given seed.

Imports torch, ``workers.model`` and the settings object :class:`search.training.TrainConfig`
(plain data; re-exported here); the dataset is any object shaped like ``workers.data.Dataset``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from search.objectives import LATENCY_REFERENCE
from search.training import SCHEDULES, TrainConfig
from workers.model import build_model

if TYPE_CHECKING:
    from search.space import ArchSpec
    from workers.data import Dataset

__all__ = [
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "augment_batch",
    "build_optimizer",
    "evaluate",
    "reference_latency_ms",
    "resolve_device",
    "train",
]

_ONECYCLE_WARMUP = 0.25  # share of the steps spent raising the learning rate

EpochCallback = Callable[[int, float, float, float], "bool | None"]


@dataclass(frozen=True)
class TrainResult:
    """What one training run measured.

    ``train_s`` counts the training steps of all epochs done (not evaluation), and
    ``images_per_s`` is the images trained on divided by it. ``latency_ms`` is inference time per
    image at a batch of ``latency_batch``, in the training precision and memory format.
    ``latency_rel`` is ``latency_ms`` over the reference network's, measured alike on the same
    device (:func:`reference_latency_ms`). ``peak_mem_bytes`` is the peak CUDA memory allocated
    during the run on CUDA, and the
    process's peak resident memory on CPU. ``device`` is the CUDA device name or ``"cpu"``.
    ``weights`` is the trained state dict (CPU tensors) as ``torch.save`` bytes, when asked for.
    """

    val_acc_per_epoch: tuple[float, ...]
    train_loss_per_epoch: tuple[float, ...]
    val_acc: float
    test_acc: float
    train_s: float
    latency_ms: float
    latency_batch: int
    peak_mem_bytes: int
    device: str
    epochs_done: int
    images_per_s: float
    precision: str
    latency_rel: float | None = None
    weights: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists; the weights are left out)."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in self.__dict__.items()
            if k != "weights"
        }


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as ``torch.device``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but CUDA is not available")
    return device


def augment_batch(
    x: torch.Tensor, *, pad: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random horizontal flip and random ``pad``-pixel translation of each image of ``x``.

    The translation is a crop of the zero-padded image; with normalised inputs zero is the mean.
    Works on the device of ``x``; ``generator`` must live there too. The result is NCHW in
    channels_last layout, which CPU convolutions train faster on too. The same generator state
    gives the same images on every device.

    Example:
        >>> augment_batch(torch.randn(8, 3, 32, 32), pad=4).shape
        torch.Size([8, 3, 32, 32])
    """
    b, _, h, w = x.shape
    flip = torch.rand(b, device=x.device, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if pad <= 0:
        return x
    shift = torch.randint(0, 2 * pad + 1, (2, b), device=x.device, generator=generator)
    if x.device.type == "cpu":
        return _translate(x, shift, pad=pad)
    rows = torch.arange(h, device=x.device) + shift[0][:, None]
    cols = torch.arange(w, device=x.device) + shift[1][:, None]
    batch = torch.arange(b, device=x.device)[:, None, None]
    padded = F.pad(x, (pad, pad, pad, pad))
    # one gather for all images: the result is (B, H, W, C), i.e. NCHW in channels_last layout
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _translate(x: torch.Tensor, shift: torch.Tensor, *, pad: int) -> torch.Tensor:
    """``x`` cropped from its ``pad``-padded self at offsets ``shift`` (2 × B), copied by groups
    of images that share an offset.

    On CPU the one gather of the CUDA path computes an index per pixel and reads the padded
    copy at random; the (2·pad + 1)² slice copies here read each image once, contiguously,
    and never build the padded copy: about 2× faster, the same values.
    """
    _, _, h, w = x.shape
    side = 2 * pad + 1
    code = shift[0] * side + shift[1]
    order = torch.argsort(code)
    counts = torch.bincount(code, minlength=side * side).tolist()
    out = torch.zeros_like(x, memory_format=torch.channels_last)
    for group, idx in enumerate(order.split(counts)):
        if len(idx) == 0:
            continue
        dy, dx = group // side - pad, group % side - pad
        # output pixel (r, c) is input pixel (r + dy, c + dx) where that lies inside the image
        r0, r1, c0, c1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
        if r0 < r1 and c0 < c1:
            out[idx, :, r0:r1, c0:c1] = x[idx, :, r0 + dy : r1 + dy, c0 + dx : c1 + dx]
    return out


def build_optimizer(
    model: nn.Module,
    config: TrainConfig,
    steps_per_epoch: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """SGD and its per-step learning-rate schedule (``None`` for ``constant``) for ``config``.

    Example:
        >>> opt, sched = build_optimizer(nn.Linear(2, 2), TrainConfig(epochs=2), 10)
        >>> type(sched).__name__
        'OneCycleLR'
    """
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov and config.momentum > 0,
    )
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=config.lr,
            total_steps=total,
            pct_start=_ONECYCLE_WARMUP,
            anneal_strategy="linear",
            cycle_momentum=False,
        )
    if config.schedule == "cosine":
        return opt, torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
    return opt, None


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> float:
    """Accuracy of ``model`` on normalised ``x`` and labels ``y`` (on the model's device).

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> 0 <= evaluate(model, torch.randn(6, 1, 2, 2), torch.zeros(6, dtype=torch.long),
        ...               batch_size=4) <= 1
        True
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    try:
        with torch.inference_mode(), _autocast(x.device, bf16):
            for start in range(0, len(x), batch_size):
                xb = x[start : start + batch_size]
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                correct += (model(xb).argmax(1) == y[start : start + batch_size]).sum()
    finally:
        model.train(was_training)
    return correct.item() / max(len(x), 1)


def train(
    arch: ArchSpec,
    dataset: Dataset,
    config: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
    keep_weights: bool = False,
) -> TrainResult:
    """Train ``arch`` on ``dataset`` with ``config`` and measure it.

    After each epoch, ``on_epoch(epoch, val_acc, train_loss, seconds)`` is called with the
    1-based epoch number, the validation accuracy, the mean training loss and the epoch's
    training seconds; returning ``True`` stops training there (``epochs_done < epochs``). Test
    accuracy is measured once, at the end. With ``keep_weights`` the result carries the trained
    state dict.

    Raises:
        FloatingPointError: the training loss became NaN or infinite.
        ValueError: the configuration does not fit the dataset or device.

    Example:
        >>> from workers.data import load_dataset
        >>> from search.space import ArchSpec
        >>> arch = ArchSpec.from_json('{"stages": [{"downsample": "max", "kernel": 3, '
        ...                           '"skip": "none", "width": 8}]}')
        >>> result = train(arch, load_dataset("digits"), TrainConfig(epochs=1))
        >>> result.epochs_done, 0 <= result.val_acc <= 1
        (1, True)
    """
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    bf16 = cuda if config.bf16 == "auto" else bool(config.bf16)
    channels_last = cuda if config.channels_last == "auto" else bool(config.channels_last)
    if len(dataset.x_val) == 0 or len(dataset.x_test) == 0:
        raise ValueError("the dataset needs validation and test examples")
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotuned kernels pay off
        torch.cuda.reset_peak_memory_stats(device)

    x_train = dataset.normalize(dataset.x_train.to(device, non_blocking=True))
    y_train = dataset.y_train.to(device, non_blocking=True)
    x_val = dataset.normalize(dataset.x_val.to(device))
    y_val = dataset.y_val.to(device)
    n = len(x_train)
    # drop the ragged last batch (as airbench does); a set smaller than one batch is one batch
    batch = min(config.batch_size, n)
    steps = n // batch
    pad = dataset.input_shape[1] // 8

    rng_devices = []
    if cuda:
        rng_devices.append(torch.cuda.current_device() if device.index is None else device.index)
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed)
        model = build_model(
            arch, in_channels=dataset.input_shape[0], num_classes=dataset.num_classes
        )
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt, sched = build_optimizer(model, config, steps)
    gen = torch.Generator(device=device).manual_seed(config.seed)

    val_accs: list[float] = []
    losses: list[float] = []
    train_s = 0.0
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        with _timer(device) as elapsed:
            perm = torch.randperm(n, device=device, generator=gen)
            for step in range(steps):
                idx = perm[step * batch : (step + 1) * batch]
                xb = x_train[idx]
                if config.augment:
                    xb = augment_batch(xb, pad=pad, generator=gen)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with _autocast(device, bf16):
                    logits = model(xb)
                loss = F.cross_entropy(
                    logits.float(), y_train[idx], label_smoothing=config.label_smoothing
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss.detach()
        seconds = elapsed()
        train_s += seconds
        train_loss = loss_sum.item() / steps  # the epoch's one host sync
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training loss became {train_loss} in epoch {epoch} "
                f"(lr {config.lr}); the candidate diverged"
            )
        val_acc = evaluate(
            model,
            x_val,
            y_val,
            batch_size=config.eval_batch_size,
            bf16=bf16,
            channels_last=channels_last,
        )
        val_accs.append(val_acc)
        losses.append(train_loss)
        if on_epoch is not None and on_epoch(epoch, val_acc, train_loss, seconds) is True:
            break

    del x_train, y_train, x_val, y_val  # free the device copies before the test set moves in
    test_acc = evaluate(
        model,
        dataset.normalize(dataset.x_test.to(device)),
        dataset.y_test.to(device),
        batch_size=config.eval_batch_size,
        bf16=bf16,
        channels_last=channels_last,
    )
    latency_ms = _latency_ms(
        model, (config.latency_batch, *dataset.input_shape), device, bf16, channels_last
    )
    reference_ms = reference_latency_ms(
        device,
        input_shape=dataset.input_shape,
        batch=config.latency_batch,
        bf16=bf16,
        channels_last=channels_last,
    )
    return TrainResult(
        val_acc_per_epoch=tuple(val_accs),
        train_loss_per_epoch=tuple(losses),
        val_acc=val_accs[-1],
        test_acc=test_acc,
        train_s=train_s,
        latency_ms=latency_ms,
        latency_rel=latency_ms / reference_ms,
        latency_batch=config.latency_batch,
        peak_mem_bytes=_peak_memory(device),
        device=torch.cuda.get_device_name(device) if cuda else "cpu",
        epochs_done=len(val_accs),
        images_per_s=len(val_accs) * steps * batch / train_s if train_s > 0 else 0.0,
        precision="bf16" if bf16 else "fp32",
        weights=_state_bytes(model) if keep_weights else None,
    )


def _state_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def _autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@contextlib.contextmanager
def _timer(device: torch.device) -> Iterator[Callable[[], float]]:
    """Seconds spent in the block; on CUDA measured by events, synchronising once at the end."""
    result: list[float] = []
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        yield lambda: result[0]
        end.record()
        end.synchronize()
        result.append(start.elapsed_time(end) / 1000)
    else:
        t0 = time.perf_counter()
        yield lambda: result[0]
        result.append(time.perf_counter() - t0)


def _latency_ms(
    model: nn.Module, shape: tuple[int, ...], device: torch.device, bf16: bool, channels_last: bool
) -> float:
    """Milliseconds of inference per image at batch ``shape[0]``, after warm-up."""
    x = torch.randn(shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.eval()
    with torch.inference_mode(), _autocast(device, bf16):
        for _ in range(2):
            model(x)
        with _timer(device) as elapsed:
            model(x)
        reps = max(3, min(50, int(0.2 / max(elapsed(), 1e-6))))
        with _timer(device) as elapsed:
            for _ in range(reps):
                model(x)
    return elapsed() * 1000 / reps / shape[0]


@functools.cache
def reference_latency_ms(
    device: torch.device,
    *,
    input_shape: tuple[int, int, int],
    batch: int,
    bf16: bool,
    channels_last: bool,
) -> float:
    """Milliseconds of inference per image of :data:`search.objectives.LATENCY_REFERENCE` on
    ``device``, measured as a candidate's ``latency_ms`` is: the divisor of ``latency_rel``.

    Measured once per process for each set of arguments (a trial process trains many
    candidates): the cost of one latency measurement, once.

    Example:
        >>> ms = reference_latency_ms(torch.device("cpu"), input_shape=(1, 8, 8), batch=4,
        ...                           bf16=False, channels_last=False)
        >>> ms > 0
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the weights do not change the time, but keep them the same
        model = build_model(LATENCY_REFERENCE, in_channels=input_shape[0], num_classes=10)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return _latency_ms(model, (batch, *input_shape), device, bf16, channels_last)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
    except ImportError:  # not on Unix
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
