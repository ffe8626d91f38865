"""One run on a GPU machine: the trainer, packing, the memory estimate and a real answer.

On CIFAR-10 (the image-folder tarball ``cifar10-jpeg.tar.gz``), in one process tree, it measures:

1. **trainer**: poolstride's trainer against the naive loop of ``bench/trainer.py`` (same
   candidate, data and initialisation): images/s of each and ``trainer_speedup``;
2. **memory**: for five candidates, ``search.memory.estimate_memory(...).allocated`` against
   ``torch.cuda.max_memory_allocated`` of a real training (target: ratio within 1 ± 0.3);
3. **packing**: 1, 2 and 4 trainers sharing the GPU as separate processes, started together
   after a warm-up; ``packing_factor_K`` is their summed images/s over one trainer's, and
   ``packing_factor`` the best of them;
4. **answer**: the per-stage downsample question, as a job's ablation phase asks it: a
   reference architecture and each variant that changes one stage's downsampling
   (``search.design.ablate_plan``), 3 seeds each, trained by ``workers.train.train``; the
   verdicts and recommendations are ``search.verdicts``' own.

Every figure is one ``name: value`` line, printed as soon as it is known (a run cut short keeps
what it measured); each section ends with its seconds. Without CUDA it stops with an error,
unless ``--device cpu`` or ``--smoke`` (tiny sizes, for the test suite) says otherwise. On CPU
the memory section prints the estimates only: ``max_memory_allocated`` is CUDA's.

Needs torch, numpy, pandas, scipy and Pillow beside the checkout: no Ray, Optuna or SQLAlchemy.
``bench/gpu.sh`` is the one command for a GPU machine.

    python bench/gpu_check.py --data .bench-data/cifar10-jpeg.tar.gz       # on a GPU
    python bench/gpu_check.py --smoke --device cpu                         # synthetic, tiny
    python bench/gpu_check.py --data synthetic                             # no tarball at hand
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import queue
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trainer import images_per_s, naive_train  # noqa: E402
from search.cost import arch_cost  # noqa: E402
from search.design import Planned, ablate_plan, replicate_seed  # noqa: E402
from search.memory import MemoryEstimate, estimate_memory, resident_dataset_bytes  # noqa: E402
from search.space import ArchSpec, SpaceConfig, StageSpec  # noqa: E402
from search.verdicts import ablation_effects, recommendations  # noqa: E402
from workers.data import Dataset, load_dataset  # noqa: E402
from workers.train import TrainConfig, resolve_device, train  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FULL",
    "SMOKE",
    "Answer",
    "DataSpec",
    "Sizes",
    "answer_frame",
    "answer_plan",
    "answer_verdicts",
    "load_data",
    "main",
    "memory_candidates",
]

DEFAULT_DATA = ROOT / ".bench-data" / "cifar10-jpeg.tar.gz"
ANSWER_SEEDS = 3
MEMORY_TARGET = 0.3  # the estimate should be within ±30 % of what the allocator saw
_MIB = 2**20


class Sizes(NamedTuple):
    """How big each section is: the GPU run's sizes, or the smoke test's."""

    train_images: int | None  # None: every training image
    test_images: int | None
    synthetic_size: int  # images of the synthetic set, when no --data is given
    batch: int
    trainer_widths: tuple[int, ...]  # bench/trainer.py's candidate
    trainer_depth: int
    trainer_epochs: int
    widths: tuple[int, ...]  # the answer's reference, also the packed trainers' candidate
    packing: tuple[int, ...]  # numbers of trainers sharing the device
    packing_epochs: int
    answer_epochs: int
    latency_batch: int


FULL = Sizes(
    train_images=None,
    test_images=None,
    synthetic_size=60000,
    batch=512,
    trainer_widths=(64, 128, 256),
    trainer_depth=2,
    trainer_epochs=3,
    widths=(32, 64, 128),
    packing=(1, 2, 4),
    packing_epochs=3,
    answer_epochs=6,
    latency_batch=64,
)
SMOKE = Sizes(
    train_images=96,
    test_images=32,
    synthetic_size=160,
    batch=32,
    trainer_widths=(4, 8, 16),
    trainer_depth=1,
    trainer_epochs=2,
    widths=(4, 8),
    packing=(1, 2),
    packing_epochs=2,
    answer_epochs=1,
    latency_batch=4,
)


class DataSpec(NamedTuple):
    """What to load, in a form a spawned trainer process can be given."""

    path: str | None  # an image folder or tarball; None: synthetic
    cache_dir: str | None
    synthetic_size: int
    train_images: int | None
    test_images: int | None


def load_data(spec: DataSpec) -> Dataset:
    """The dataset of ``spec``, cut to its sizes (every split keeps a seeded random order, so
    a prefix is a fair sample).

    Example:
        >>> ds = load_data(DataSpec(None, None, 100, 40, 10))
        >>> len(ds.x_train), len(ds.x_test), ds.input_shape
        (40, 10, (3, 32, 32))
    """
    if spec.path is None:
        ds = load_dataset(
            "synthetic", input_shape=(3, 32, 32), size=spec.synthetic_size, test_fraction=0.2
        )
    else:
        ds = load_dataset(
            "imagefolder",
            data_dir=spec.path,
            input_shape=(3, 32, 32),
            cache_dir=spec.cache_dir,
        )
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[: spec.train_images],
        y_train=ds.y_train[: spec.train_images],
        x_test=ds.x_test[: spec.test_images],
        y_test=ds.y_test[: spec.test_images],
    )


def _arch(
    widths: Sequence[int],
    *,
    depth: int = 1,
    downsample: str = "max",
    kernel: int = 3,
    skip: str = "none",
) -> ArchSpec:
    return ArchSpec(tuple(StageSpec(downsample, kernel, skip, w, depth) for w in widths))


def _describe(arch: ArchSpec) -> str:
    s = arch.stages
    return (
        f"widths {','.join(str(t.width) for t in s)} depth {s[0].depth} "
        f"{'/'.join(t.downsample for t in s)} k{s[0].kernel} skip {s[0].skip}"
    )


# --------------------------------------------------------------------------- pure parts


def memory_candidates(widths: Sequence[int]) -> list[ArchSpec]:
    """Five candidates of other widths, depths and stage choices, scaled from ``widths``.

    Example:
        >>> [a.stages[0].width for a in memory_candidates((32, 64, 128))]
        [32, 64, 16, 48, 128]
    """
    w = list(widths)
    return [
        _arch(w),
        _arch([2 * v for v in w], depth=2),
        _arch([v // 2 for v in w], downsample="strided", kernel=5, skip="proj"),
        _arch([3 * v // 2 for v in w], depth=2, downsample="conv", skip="pool"),
        _arch([4 * v for v in w], downsample="avg", kernel=7, skip="proj"),
    ]


def answer_plan(reference: ArchSpec, *, seeds: int = ANSWER_SEEDS) -> list[Planned]:
    """The trainings of the downsample answer: the reference and its one-downsample variants
    (``search.design.ablate_plan``, every downsample allowed), ``seeds`` replicates each, the
    reference's first.

    Example:
        >>> plan = answer_plan(_arch((8, 16, 32)))
        >>> len(plan), plan[0].arch == _arch((8, 16, 32)), sorted({p.replicate for p in plan})
        (30, True, [3, 4, 5])
    """
    space = SpaceConfig.from_mapping({"stages": len(reference.stages), "input": "3x32x32"})
    plan, _ = ablate_plan(
        [(0, reference)], space=space, input_shape=(3, 32, 32), ablate="downsample", seeds=seeds
    )
    return plan


def answer_frame(
    plan: Sequence[Planned],
    accuracies: Sequence[tuple[float, float]],
    *,
    input_shape: Sequence[int],
    num_classes: int,
) -> pd.DataFrame:
    """Candidate rows as ``search.query.load_candidates`` gives them to the analysis: one per
    planned training (trial numbers in plan order) with its ``(val_acc, test_acc)``.

    Example:
        >>> plan = answer_plan(_arch((8, 16)), seeds=1)
        >>> frame = answer_frame(plan, [(0.5, 0.4)] * len(plan), input_shape=(3, 32, 32),
        ...                      num_classes=10)
        >>> len(frame), frame["trial"].tolist()[:3], frame["phase"].iloc[0]
        (7, [0, 1, 2], 'ablate')
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for trial, (p, (val_acc, test_acc)) in enumerate(zip(plan, accuracies, strict=True)):
        cost = arch_cost(p.arch, input_shape=input_shape, num_classes=num_classes)
        rows.append(
            {
                "trial": trial,
                "state": "complete",
                "phase": p.phase,
                "replicate": p.replicate,
                "seed": replicate_seed(0, p.replicate),
                "reference": p.reference,
                **p.arch.params(),
                "arch_hash": p.arch.hash(),
                "val_acc": val_acc,
                "test_acc": test_acc,
                "flops": cost.flops,
                "params": cost.params,
            }
        )
    return pd.DataFrame(rows)


class Answer(NamedTuple):
    """What ``search.verdicts`` says about the frame: effects and per-stage advice."""

    effects: pd.DataFrame
    recommendations: pd.DataFrame


def answer_verdicts(frame: pd.DataFrame) -> Answer:
    """The verdicts around the reference (trial 0) and the recommendations, on FLOPs.

    Example:
        >>> plan = answer_plan(_arch((8, 16)))
        >>> accs = [(0.5 + 0.01 * (i % 5), 0.5) for i in range(len(plan))]
        >>> answer = answer_verdicts(answer_frame(plan, accs, input_shape=(3, 32, 32),
        ...                                       num_classes=10))
        >>> len(answer.effects), len(answer.recommendations)
        (6, 2)
    """
    effects = ablation_effects(frame, references=[0], cost="flops")
    return Answer(effects, recommendations(frame, effects, cost="flops"))


# --------------------------------------------------------------------------- measuring


def _figure(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


@contextmanager
def _section(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    _figure(f"{name}_s", f"{time.perf_counter() - t0:.1f}")


def _config(sizes: Sizes, device: torch.device, *, epochs: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=sizes.batch,
        lr=0.2,
        seed=seed,
        device=str(device),
        augment=True,
        latency_batch=sizes.latency_batch,
    )


def _trained_images(ds: Dataset, config: TrainConfig) -> int:
    batch = min(config.batch_size, len(ds.x_train))
    return len(ds.x_train) // batch * batch


def check_trainer(ds: Dataset, sizes: Sizes, device: torch.device) -> None:
    """bench/trainer.py's comparison: its naive loop, then ``workers.train.train``."""
    arch = _arch(sizes.trainer_widths, depth=sizes.trainer_depth)
    config = _config(sizes, device, epochs=sizes.trainer_epochs)
    per_epoch = _trained_images(ds, config)
    _figure("trainer_candidate", f"{_describe(arch)}, {config.epochs} epochs, batch {sizes.batch}")
    naive_s, _ = naive_train(arch, ds, config, device)
    naive = images_per_s(naive_s, per_epoch)
    _figure("trainer_naive_images_per_s", f"{naive:.0f}")
    seconds: list[float] = []
    train(arch, ds, config, on_epoch=lambda epoch, acc, loss, s: seconds.append(s))
    ours = images_per_s(seconds, per_epoch)
    _figure("trainer_images_per_s", f"{ours:.0f}")
    _figure("trainer_speedup", f"{ours / naive:.2f}")


def check_memory(ds: Dataset, sizes: Sizes, device: torch.device) -> None:
    """Each candidate's estimate; on CUDA beside the peak its training allocated."""
    cuda = device.type == "cuda"
    precision = "bf16" if cuda else "fp32"  # what train() resolves bf16="auto" to
    resident = resident_dataset_bytes(
        train_images=len(ds.x_train), val_images=len(ds.x_val), input_shape=ds.input_shape
    )
    within = 0
    candidates = memory_candidates(sizes.widths)
    for i, arch in enumerate(candidates, 1):
        est: MemoryEstimate = estimate_memory(
            arch,
            input_shape=ds.input_shape,
            num_classes=ds.num_classes,
            batch_size=min(sizes.batch, len(ds.x_train)),
            precision=precision,
            dataset_bytes=resident,
        )
        _figure(f"memory_candidate_{i}", _describe(arch))
        _figure(
            f"memory_estimate_mib_{i}",
            f"{est.allocated / _MIB:.1f} (activations {est.activations / _MIB:.1f}, weights "
            f"{est.weights / _MIB:.1f}, dataset {est.dataset / _MIB:.1f})",
        )
        if not cuda:
            continue
        # what is still allocated from earlier sections is not this training's
        base = torch.cuda.memory_allocated(device)
        result = train(arch, ds, _config(sizes, device, epochs=1))
        measured = result.peak_mem_bytes - base
        ratio = est.allocated / measured
        within += abs(ratio - 1) <= MEMORY_TARGET
        _figure(f"memory_measured_mib_{i}", f"{measured / _MIB:.1f}")
        _figure(f"memory_ratio_{i}", f"{ratio:.2f}")
    if cuda:
        _figure("memory_within_30pct", f"{within} of {len(candidates)}")
    else:
        _figure(
            "memory_ratio",
            "skipped: torch.cuda.max_memory_allocated needs CUDA (the estimates above stand alone)",
        )


def _packed_trainer(
    spec: DataSpec,
    arch: ArchSpec,
    config: TrainConfig,
    barrier: Any,
    results: Any,
) -> None:
    """One of the trainers sharing the device: warm up, wait for the others, train, report."""
    try:
        ds = load_data(spec)
        # CUDA's start, cuDNN's autotuning and the reference latency are the first run's
        train(arch, ds, dataclasses.replace(config, epochs=1))
        barrier.wait(timeout=600)
        seconds: list[float] = []
        train(arch, ds, config, on_epoch=lambda epoch, acc, loss, s: seconds.append(s))
        results.put(("ok", images_per_s(seconds, _trained_images(ds, config))))
    except BaseException:
        barrier.abort()  # the others stop waiting
        results.put(("error", traceback.format_exc()))


def _run_packed(spec: DataSpec, arch: ArchSpec, config: TrainConfig, count: int) -> list[float]:
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_packed_trainer, args=(spec, arch, config, barrier, results))
        for _ in range(count)
    ]
    for p in procs:
        p.start()
    outcomes: list[tuple[str, Any]] = []
    try:
        while len(outcomes) < count:
            try:
                outcomes.append(results.get(timeout=5))
            except queue.Empty:
                # a trainer killed outright (out of memory, a signal) reports nothing
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a packed trainer died with exit code {dead[0]}") from None
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [text for kind, text in outcomes if kind == "error"]
    if errors:
        raise RuntimeError(f"a packed trainer failed:\n{errors[0]}")
    return [float(v) for _, v in outcomes]


def check_packing(spec: DataSpec, sizes: Sizes, device: torch.device) -> None:
    """K trainers of the answer's reference at once, each in its own process."""
    arch = _arch(sizes.widths)
    config = _config(sizes, device, epochs=sizes.packing_epochs)
    _figure("packing_candidate", f"{_describe(arch)}, {config.epochs} epochs")
    single = math.nan
    factors: dict[int, float] = {}
    for count in sizes.packing:
        rates = _run_packed(spec, arch, config, count)
        total = sum(rates)
        _figure(f"packing_images_per_s_{count}", f"{total:.0f}")
        if count == 1:
            single = total
        else:
            factors[count] = total / single
            _figure(f"packing_factor_{count}", f"{factors[count]:.2f}")
    best = max(factors, key=lambda k: factors[k])
    _figure("packing_factor", f"{factors[best]:.2f} (with {best} trainers)")


def check_answer(ds: Dataset, sizes: Sizes, device: torch.device) -> None:
    """Train the plan one training at a time, then print what the analysis concludes."""
    reference = _arch(sizes.widths)
    plan = answer_plan(reference)
    _figure(
        "answer_plan",
        f"reference {_describe(reference)}, {len(plan) // ANSWER_SEEDS - 1} downsample "
        f"variants, {ANSWER_SEEDS} seeds each: {len(plan)} trainings of {sizes.answer_epochs} "
        "epochs",
    )
    accuracies = []
    for p in plan:
        config = _config(
            sizes, device, epochs=sizes.answer_epochs, seed=replicate_seed(0, p.replicate)
        )
        result = train(p.arch, ds, config)
        accuracies.append((result.val_acc, result.test_acc))
    frame = answer_frame(plan, accuracies, input_shape=ds.input_shape, num_classes=ds.num_classes)
    means = frame.groupby("arch_hash", sort=False)["val_acc"].agg(["mean", "std"])
    _figure(
        "answer_reference_val_acc",
        f"{means['mean'].iloc[0]:.4f} ± {means['std'].iloc[0]:.4f} over {ANSWER_SEEDS} seeds",
    )
    answer = answer_verdicts(frame)
    for row in answer.effects.itertuples():
        _figure(f"verdict_s{row.stage}_{row.to}", row.text)
    for row in answer.recommendations.itertuples():
        _figure(f"recommendation_s{row.stage}", row.text)
    resolved = int(answer.effects["verdict"].isin(["better", "worse"]).sum())
    _figure("answer_verdicts_resolved", f"{resolved} of {len(answer.effects)}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        help=f"image folder or tarball of CIFAR-10 (default {DEFAULT_DATA.relative_to(ROOT)}), "
        "or 'synthetic' (learnable random images; the default with --smoke)",
    )
    p.add_argument("--device", help="cuda (default) or cpu; with --smoke, cuda when available")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: proves the script runs")
    p.add_argument("--cache-dir", help="where decoded images are cached (workers.data's default)")
    args = p.parse_args(argv)

    sizes = SMOKE if args.smoke else FULL
    try:
        device = resolve_device(args.device or ("auto" if args.smoke else "cuda"))
    except ValueError as exc:
        raise SystemExit(
            f"gpu_check: {exc}; this check is for a CUDA GPU (--device cpu or --smoke runs it "
            "on the CPU)"
        ) from None
    path = args.data or (None if args.smoke else str(DEFAULT_DATA))
    if path == "synthetic":
        path = None
    if path is not None and not Path(path).exists():
        raise SystemExit(
            f"gpu_check: {path} does not exist (cp ../shared/data/cifar10-jpeg.tar.gz "
            ".bench-data/ in the checkout)"
        )
    spec = DataSpec(
        path, args.cache_dir, sizes.synthetic_size, sizes.train_images, sizes.test_images
    )
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    _figure("device", f"{name}, torch {torch.__version__}, {'smoke' if args.smoke else 'full'}")
    with _section("data"):
        ds = load_data(spec)
        _figure(
            "data",
            f"{path or 'synthetic'}: {len(ds.x_train)} train, {len(ds.x_val)} val, "
            f"{len(ds.x_test)} test images",
        )
    with _section("trainer"):
        check_trainer(ds, sizes, device)
    with _section("memory"):
        check_memory(ds, sizes, device)
    with _section("packing"):
        check_packing(spec, sizes, device)
    with _section("answer"):
        check_answer(ds, sizes, device)
    _figure("total_s", f"{time.perf_counter() - t0:.1f}")


if __name__ == "__main__":
    main()
