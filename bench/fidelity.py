"""Early stopping's fidelity: the same search with and without ``--early-stop mo-asha``.

Three jobs on the same space, sampler and seed, side by side in one run, each through the whole
stack (a SQLite queue, a worker, Ray Tune, Optuna), the result cache off so that every
candidate trains:

- ``none``: ``--trials`` candidates, every one trained for every epoch;
- ``mo-asha``: the same candidate budget, stopped at the rungs (``--eta``, ``--min-epochs``);
- ``mo-asha, equal epochs``: as many candidates as the ``none`` job's epochs buy at the
  ``mo-asha`` job's epochs per candidate (its epochs are printed: more candidates meet more
  records per rung, so they stop more often and it tends to stay under the budget).

Printed per job: candidates (complete / stopped early), epochs trained, the job's wall time
(claim to finish) and the hypervolume of its final front, at one fixed reference point for
all three (accuracy 0 and 1.1 x the largest cost of any complete candidate of the three jobs:
:mod:`search.pareto`'s rule over the pooled candidates). Front members are trained fully in
every job. Last lines::

    epoch_ratio: epochs of none / epochs of mo-asha (same candidates; target >= 2)
    hypervolume_ratio: hypervolume of mo-asha / of none (same candidates; target >= 0.95)
    hypervolume_ratio_equal_epochs: of mo-asha with equal epochs / of none (target >= 1)

The default sampler is ``random``: the first two jobs then evaluate exactly the same
candidates, so (a) measures only what stopping loses.

    .venv/bin/python bench/fidelity.py [--trials 24] [--epochs 9] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.config import JobConfig
from search.pareto import hypervolume
from search.query import load_candidates
from search.store import Store
from workers.daemon import Worker


class Run(NamedTuple):
    label: str
    job_id: int
    complete: int
    stopped: int
    epochs: int
    wall_s: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--widths", default="8,16,32")
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="4 candidates of 4 epochs, widths 4,8: proves it runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.widths = 4, 4, "4,8"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base: dict[str, Any] = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "concurrency": args.concurrency,
        "cpus_per_trial": 1,
        "sampler": args.sampler,
        "seed": args.seed,
        "cache": False,
        "eta": args.eta,
        "min_epochs": args.min_epochs,
        "space": {"widths": [int(w) for w in args.widths.split(",")]},
    }
    print(
        f"search on {args.dataset}: widths {args.widths}, {args.epochs} epochs, sampler "
        f"{args.sampler}, seed {args.seed}, {args.concurrency} at once; mo-asha eta {args.eta}, "
        f"min_epochs {args.min_epochs}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        full = _run(url, "none", {**base, "trials": args.trials, "early_stop": "none"})
        asha = _run(url, "mo-asha", {**base, "trials": args.trials, "early_stop": "mo-asha"})
        per_candidate = asha.epochs / args.trials
        trials = max(args.trials, math.floor(full.epochs / per_candidate))
        equal = _run(
            url, "mo-asha, equal epochs", {**base, "trials": trials, "early_stop": "mo-asha"}
        )
        runs = (full, asha, equal)
        with Store.open(url) as store:
            objectives = list(store.get_job(full.job_id).config.objectives)
            frames = {
                r.label: load_candidates(store, r.job_id, where=["state=complete"]) for r in runs
            }
    import pandas as pd

    pooled = pd.concat(list(frames.values()), ignore_index=True)
    volumes = {label: hypervolume(f, objectives, scale=pooled) for label, f in frames.items()}
    for r in runs:
        print(
            f"{r.label}: {r.complete + r.stopped} candidates ({r.complete} complete, "
            f"{r.stopped} stopped early), {r.epochs} epochs trained, wall {r.wall_s:.1f} s, "
            f"hypervolume {volumes[r.label]:.4f}"
        )
    print(f"wall_time_ratio: {full.wall_s / asha.wall_s:.3f}")
    print(f"epoch_ratio: {full.epochs / asha.epochs:.3f}")
    print(f"hypervolume_ratio: {volumes['mo-asha'] / volumes['none']:.3f}")
    print(
        f"hypervolume_ratio_equal_epochs: {volumes['mo-asha, equal epochs'] / volumes['none']:.3f}"
    )


def _run(url: str, label: str, mapping: dict[str, Any]) -> Run:
    config = JobConfig.from_mapping(mapping)
    with Store.open(url, create=True) as store:
        job = store.submit(config)
    Worker(url).run(job_id=job.id)
    with Store.open(url) as store:
        done = store.get_job(job.id)
        rows = store.list_candidates(job.id)
    if done.status != "succeeded":
        raise SystemExit(f"{label}: job {job.id} {done.status}: {done.error}")
    assert done.started_at is not None and done.finished_at is not None
    return Run(
        label,
        job.id,
        sum(r.state == "complete" for r in rows),
        sum(r.state == "pruned" for r in rows),
        sum(r.epochs_done for r in rows),
        (done.finished_at - done.started_at).total_seconds(),
    )


if __name__ == "__main__":
    main()
