"""Every sampler of ``search.study.SAMPLERS`` on the same space, budget and seeds, side by side
in one run: the hypervolume each search reaches, at one fixed reference point.

Each search is a job's search phase driven by ask/tell in this process: the study opened as a
job opens it (:func:`search.study.open_study`, so the sampler, its seed and its sizing from the
budget are a job's), architectures drawn through the space's own sampling, trials told with
the job's objectives, ``concurrency`` trials in flight at once (told oldest first) as Tune
runs them. Every candidate trains with :func:`workers.train.train` on ``digits`` (CPU); a
training is a function of (architecture, seed), so each is trained once and shared by the
searches that propose it.

The hypervolume's reference point is the same for every search: accuracy 0 and 1.1 × the
largest FLOPs of any architecture of the space (:func:`search.pareto.hypervolume` with that as
its scale), not each search's own largest cost. Printed per sampler (:func:`summarise`): the
mean, standard deviation, minimum and maximum hypervolume over the seeds, how many proposals
repeated an architecture the same search had already proposed, its mean hypervolume over
random search's and that ratio's spread seed by seed; then each search's hypervolume; last,
``sampler_hv_vs_random: X``, the default sampler's ratio.

    .venv/bin/python bench/sampler.py [--seeds 5] [--trials 16] [--epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

import optuna
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.cache import resolve_settings  # noqa: E402
from search.config import JobConfig  # noqa: E402
from search.cost import arch_cost  # noqa: E402
from search.design import replicate_seed  # noqa: E402
from search.pareto import hypervolume  # noqa: E402
from search.space import ArchSpec  # noqa: E402
from search.study import SAMPLERS, open_study  # noqa: E402
from workers.data import Dataset, load_job_data  # noqa: E402
from workers.train import train  # noqa: E402

DEFAULT = str(JobConfig.__dataclass_fields__["sampler"].default)


class Search(NamedTuple):
    """One search's outcome."""

    sampler: str
    seed: int
    hypervolume: float
    repeats: int  # proposals of an architecture the search had already proposed


def _config(sampler: str, seed: int, args: argparse.Namespace) -> JobConfig:
    return JobConfig.from_mapping(
        {
            "dataset": "digits",
            "trials": args.trials,
            "epochs": args.epochs,
            "sampler": sampler,
            "seed": seed,
            "space": {"widths": args.widths},
        }
    )


def _search(
    config: JobConfig,
    dataset: Dataset,
    memo: dict[tuple[str, int], float],
    scale: pd.DataFrame,
) -> Search:
    """Run ``config``'s search phase; ``memo`` holds the val_acc of every training so far."""
    job = open_study(
        storage=optuna.storages.InMemoryStorage(),
        name=f"{config.sampler}-{config.seed}",
        config=config,
    )
    # what a search trial trains with: the job's settings resolved for the CPU, replicate 0's
    # seed
    seed = replicate_seed(config.seed, 0)
    settings = dataclasses.replace(resolve_settings(config.train, device_type="cpu"), seed=seed)
    in_flight: deque[tuple[optuna.Trial, ArchSpec]] = deque()
    rows: list[dict[str, float]] = []
    seen: set[str] = set()
    repeats = asked = 0
    while len(rows) < config.trials:
        while asked < config.trials and len(in_flight) < config.concurrency:
            trial = job.study.ask()
            job.assign_generation(trial)
            arch = config.space.sample(trial)
            repeats += arch.hash() in seen
            seen.add(arch.hash())
            in_flight.append((trial, arch))
            asked += 1
        trial, arch = in_flight.popleft()
        key = (arch.hash(), seed)
        if key not in memo:
            memo[key] = train(arch, dataset, settings).val_acc
        cost = arch_cost(
            arch, input_shape=config.space.input_shape, num_classes=dataset.num_classes
        )
        row = {**cost._asdict(), "val_acc": memo[key]}
        job.study.tell(trial, [float(row[name]) for name in config.objectives])
        rows.append(row)
    volume = hypervolume(pd.DataFrame(rows), config.objectives, scale=scale)
    return Search(config.sampler, config.seed, volume, repeats)


def summarise(searches: list[Search]) -> pd.DataFrame:
    """Per sampler: the mean, standard deviation, minimum and maximum hypervolume over the
    seeds, the repeated proposals in all, the ratio of its mean hypervolume to random
    search's (``vs_random``) and the standard deviation of that ratio seed by seed
    (``ratio_std``: each seed's two searches train on the same split with the same seed)."""
    frame = pd.DataFrame(searches)
    by_seed = frame.pivot(index="seed", columns="sampler", values="hypervolume")
    volumes = frame.groupby("sampler", sort=False)["hypervolume"]
    table = pd.DataFrame(
        {
            "mean_hv": volumes.mean(),
            "std": volumes.std(),
            "min": volumes.min(),
            "max": volumes.max(),
            "repeats": frame.groupby("sampler", sort=False)["repeats"].sum(),
        }
    )
    table["vs_random"] = table["mean_hv"] / table.loc["random", "mean_hv"]
    table["ratio_std"] = by_seed.div(by_seed["random"], axis=0).std()
    return table


def _space_costs(config: JobConfig, num_classes: int) -> pd.DataFrame:
    """The costs of every architecture of the space: the fixed scale of the hypervolume."""
    shape = config.space.input_shape
    return pd.DataFrame(
        [arch_cost(a, input_shape=shape, num_classes=num_classes)._asdict() for a in config.space]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="job seeds 0..N-1 (default 5)")
    parser.add_argument("--trials", type=int, default=16, help="search budget (default 16)")
    parser.add_argument("--epochs", type=int, default=3, help="per candidate (default 3)")
    parser.add_argument("--widths", default="4,8,16", help="stage widths (default 4,8,16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 seeds, 6 trials, 1 epoch"
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.trials, args.epochs = 2, 6, 1
    args.widths = [int(w) for w in args.widths.split(",")]
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()

    searches: list[Search] = []
    scale: pd.DataFrame | None = None
    for seed in range(args.seeds):
        memo: dict[tuple[str, int], float] = {}  # a job's trainings share its seed
        dataset = load_job_data(_config(DEFAULT, seed, args))  # split by the job's seed
        if scale is None:
            scale = _space_costs(_config(DEFAULT, seed, args), dataset.num_classes)
        for name in SAMPLERS:
            searches.append(_search(_config(name, seed, args), dataset, memo, scale))

    table = summarise(searches)
    print(
        f"digits, {args.trials} candidates, {args.epochs} epochs, widths {args.widths}, "
        f"seeds 0-{args.seeds - 1}; reference: val_acc 0, 1.1 x the space's largest costs"
    )
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    for search in searches:
        print(
            f"{search.sampler} seed {search.seed}: hv {search.hypervolume:.4f}, "
            f"repeats {search.repeats}"
        )
    print(f"wall_s: {time.perf_counter() - start:.1f}")
    print(f"sampler_hv_vs_random: {table.loc[DEFAULT, 'vs_random']:.3f}")


if __name__ == "__main__":
    main()
