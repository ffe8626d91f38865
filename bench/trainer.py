"""Trainer benchmark: poolstride's trainer against a naive PyTorch loop, same candidate, same data.

The naive loop is what a first PyTorch script does: fp32, data in host memory, each step gathers
and augments its batch on the host, copies it to the device and reads the loss back with
``.item()``. poolstride's trainer (``workers.train.train``) keeps the data on the device, cuts and
augments batches there, and on CUDA adds bf16 autocast and channels_last. Both use the same
model initialisation, SGD with the same one-cycle schedule, label smoothing and flip + crop.

Throughput is images trained per second of training, leaving out the first epoch (warm-up,
cuDNN autotuning) when there are two or more. The last line is ``trainer_speedup: X.XX``.

    python bench/trainer.py --device cuda                              # synthetic CIFAR-sized
    python bench/trainer.py --device cuda --data cifar10-jpeg.tar.gz   # real CIFAR-10

Needs torch and numpy (and Pillow for an image folder) beside poolstride's own packages; it
starts no Ray and opens no database. The trainer's settings are ``search.training.TrainConfig``,
whose ``augment`` is off by default: both loops here train with it on.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.space import ArchSpec, StageSpec
from workers.data import Dataset, load_dataset
from workers.model import build_model
from workers.train import (
    TrainConfig,
    TrainResult,
    augment_batch,
    build_optimizer,
    evaluate,
    resolve_device,
    train,
)

# CPU sizes: small enough to finish in about a minute on two cores
CPU_WIDTHS = (16, 32, 64)
CPU_TRAIN_IMAGES = 3072
CPU_TEST_IMAGES = 2000
CPU_EPOCHS = 3


def naive_train(
    arch: ArchSpec,
    ds: Dataset,
    config: TrainConfig,
    device: torch.device,
) -> tuple[list[float], float]:
    """The baseline loop; returns per-epoch training seconds and test accuracy."""
    x_host = ds.normalize(ds.x_train)
    n = len(x_host)
    batch = min(config.batch_size, n)
    steps = n // batch
    pad = ds.input_shape[1] // 8
    torch.manual_seed(config.seed)
    model = build_model(arch, in_channels=ds.input_shape[0], num_classes=ds.num_classes)
    model = model.to(device)
    opt, sched = build_optimizer(model, config, steps)
    seconds = []
    for _ in range(config.epochs):
        model.train()
        _sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        total = 0.0
        for step in range(steps):
            idx = perm[step * batch : (step + 1) * batch]
            xb = x_host[idx]
            if config.augment:
                xb = augment_batch(xb, pad=pad)
            xb, yb = xb.to(device), ds.y_train[idx].to(device)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=config.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item()
        _sync(device)
        seconds.append(time.perf_counter() - t0)
        if not math.isfinite(total):
            raise FloatingPointError("the naive loop diverged")
    test_acc = evaluate(
        model,
        ds.normalize(ds.x_test).to(device),
        ds.y_test.to(device),
        batch_size=config.eval_batch_size,
    )
    return seconds, test_acc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(seconds: Sequence[float], images_per_epoch: int) -> float:
    timed = seconds[1:] if len(seconds) > 1 else seconds
    return images_per_epoch * len(timed) / sum(timed)


def load(args: argparse.Namespace, cpu: bool) -> Dataset:
    if args.data == "synthetic":
        # 50k train images at full size, as CIFAR-10 (only what is used on CPU)
        size = 2 * CPU_TRAIN_IMAGES if cpu and not args.full else 62500
        ds = load_dataset(
            "synthetic",
            input_shape=(3, 32, 32),
            size=size,
            seed=args.seed,
            val_fraction=0.1,
            test_fraction=0.1,
        )
    else:
        if not Path(args.data).exists():
            raise SystemExit(f"bench/trainer.py: error: {args.data} does not exist")
        ds = load_dataset(
            "imagefolder",
            data_dir=args.data,
            input_shape=(3, 32, 32),
            seed=args.seed,
            val_fraction=0.02,
            cache_dir=args.cache_dir,
        )
    if cpu and not args.full:
        ds = dataclasses.replace(
            ds,
            x_train=ds.x_train[:CPU_TRAIN_IMAGES],
            y_train=ds.y_train[:CPU_TRAIN_IMAGES],
            x_test=ds.x_test[:CPU_TEST_IMAGES],
            y_test=ds.y_test[:CPU_TEST_IMAGES],
        )
    return ds


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (default) or an image folder / .tar.gz such as cifar10-jpeg.tar.gz",
    )
    p.add_argument("--epochs", type=int, help="default: 5 synthetic, 15 real data, 3 on CPU")
    p.add_argument("--widths", help="stage widths, default 64,128,256 (16,32,64 on CPU)")
    p.add_argument("--depth", type=int, default=2, help="3x3 convs per stage (default 2)")
    p.add_argument("--downsample", default="max", help="max, avg, strided or conv")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.2, help="peak one-cycle learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="where decoded images are cached")
    p.add_argument("--full", action="store_true", help="on CPU too, use all images")
    p.add_argument(
        "--repeats",
        type=int,
        help="runs of each loop, alternating which goes first; the best counts "
        "(default 2 on CPU, 1 on CUDA)",
    )
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    cpu = device.type == "cpu"
    real = args.data != "synthetic"
    widths = (
        tuple(int(w) for w in args.widths.split(","))
        if args.widths
        else CPU_WIDTHS
        if cpu
        else (64, 128, 256)
    )
    epochs = args.epochs or (CPU_EPOCHS if cpu else 15 if real else 5)
    arch = ArchSpec(tuple(StageSpec(args.downsample, 3, "none", w, args.depth) for w in widths))

    t0 = time.perf_counter()
    ds = load(args, cpu)
    print(
        f"data: {args.data} {'x'.join(map(str, ds.input_shape))}, {len(ds.x_train)} train, "
        f"{len(ds.x_test)} test images (loaded in {time.perf_counter() - t0:.1f} s)"
    )
    if cpu:
        print(
            f"cpu: scaled down to finish in about a minute ({len(ds.x_train)} train images, "
            f"widths {','.join(map(str, widths))}, {epochs} epochs); --full, --widths and "
            "--epochs override it"
        )
    config = TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=str(device),
        augment=True,
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {name}; candidate: {len(widths)} stages, widths "
        f"{','.join(map(str, widths))}, {args.depth} 3x3 convs each, {args.downsample} "
        f"downsampling; {epochs} epochs, batch {args.batch_size}, one-cycle lr {args.lr}"
    )

    batch = min(config.batch_size, len(ds.x_train))
    per_epoch = len(ds.x_train) // batch * batch
    repeats = args.repeats or (2 if cpu else 1)

    def naive() -> tuple[float, float]:
        seconds, test_acc = naive_train(arch, ds, config, device)
        return images_per_s(seconds, per_epoch), test_acc

    def trainer() -> tuple[float, TrainResult]:
        seconds: list[float] = []
        result = train(arch, ds, config, on_epoch=lambda epoch, acc, loss, s: seconds.append(s))
        return images_per_s(seconds, per_epoch), result

    # on a shared machine a run is only ever slowed down, and whichever loop goes first tends
    # to run faster: the best of each loop over runs that alternate the order counts
    naive_runs, trainer_runs = [], []
    for r in range(repeats):
        if r % 2 == 0:
            naive_runs.append(naive())
            trainer_runs.append(trainer())
        else:
            trainer_runs.append(trainer())
            naive_runs.append(naive())
    naive_ips, naive_test = max(naive_runs)
    trainer_ips, result = max(trainer_runs, key=lambda run: run[0])
    best = f" (best of {repeats} runs, alternating which goes first)" if repeats > 1 else ""
    print(
        f"naive loop (fp32, host batches + host augmentation, .item() per step): "
        f"{naive_ips:,.0f} images/s, test_acc {naive_test:.4f}{best}"
    )
    print(
        f"poolstride trainer ({result.precision}, "
        f"channels_last {'on' if device.type == 'cuda' else 'off'}, device-resident "
        f"batches + augmentation): {trainer_ips:,.0f} images/s, test_acc "
        f"{result.test_acc:.4f}, {result.train_s:.1f} s training{best}"
    )
    print(f"trainer_speedup: {trainer_ips / naive_ips:.2f}")


if __name__ == "__main__":
    main()
