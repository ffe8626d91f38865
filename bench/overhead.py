"""Orchestration overhead per trial: the marginal cost of a trial through the whole stack.

Queue (SQLite), worker, Ray Tune, Optuna and the database, exactly as ``poolstride run`` uses
them. Two jobs with the same settings run one after the other in this process, one of N
trials and one of 2N, each by a fresh worker (so each pays the same one-off costs: Ray and
Tune start, the dataset put into Ray, the study's creation); the result cache is off, so the
second job trains its first N architectures (the same ones: the sampler is seeded alike) again.
Each job's wall time is its claim to its finish; a trial's own time (training, evaluation and
latency measurement) is timed inside the trial. With ``c`` trials at once:

    overhead_per_trial_s = ((wall_2N - wall_N) - (trial_2N - trial_N) / c) / N
    overhead_fixed_s     = wall_N - N * overhead_per_trial_s - trial_N / c   (derived, not timed)
    overhead_ratio       = wall_2N / (trial_2N / c)

``overhead_per_trial_s`` is what each further trial costs outside its own work: the driver's
asks, tells and row writes, Tune's result path, a trial process's set-up. With 1-CPU trials
on a 2-core machine and 2 at once, the driver competes with the trials for the cores; run
``--concurrency 1`` for the cost on a machine where the driver has a core to itself.

    .venv/bin/python bench/overhead.py [--trials 8] [--epochs 3] [--dataset mnist5k]
        [--widths 16,32] [--concurrency 2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.config import JobConfig
from search.store import Store, optuna_storage
from workers.daemon import Worker

# --quick: near-zero training, so that the overhead dominates; about a minute on 2 cores
_QUICK = {"trials": 10, "epochs": 1, "dataset": "digits", "widths": "4"}


class JobRun(NamedTuple):
    """One job's figures."""

    trials: int
    wall_s: float  # claim to finish
    worker_s: float  # the worker's whole run, Ray's start and stop included
    trial_s: float  # sum of the trials' own time
    train_s: float  # of which training steps


def run_job(*, trials: int, args: argparse.Namespace) -> JobRun:
    """Submit and run one job of ``trials`` trials in a fresh database and worker."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        config = JobConfig.from_mapping(
            {
                "dataset": args.dataset,
                "trials": trials,
                "epochs": args.epochs,
                "concurrency": args.concurrency,
                "cpus_per_trial": 1,
                "sampler": "random",
                "cache": False,
                "space": {"widths": [int(w) for w in args.widths.split(",")]},
            }
        )
        with Store.open(url, create=True) as store:
            job = store.submit(config)
        t0 = time.perf_counter()
        Worker(url).run(job_id=job.id)
        worker_s = time.perf_counter() - t0
        with Store.open(url) as store:
            done = store.get_job(job.id)
            rows = store.list_candidates(job.id, state="complete")
        study = optuna.load_study(study_name=done.study_name, storage=optuna_storage(url))
    if done.status != "succeeded" or done.started_at is None or done.finished_at is None:
        raise SystemExit(f"the job of {trials} trials did not succeed: {done.error}")
    return JobRun(
        trials=len(rows),
        wall_s=(done.finished_at - done.started_at).total_seconds(),
        worker_s=worker_s,
        trial_s=sum(float(t.user_attrs.get("trial_s", 0.0)) for t in study.trials),
        train_s=sum(r.train_s or 0.0 for r in rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="N (default 8)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--widths", default="16,32")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"near-zero training, overhead only: {_QUICK} (overrides those flags)",
    )
    args = parser.parse_args()
    if args.quick:
        vars(args).update(_QUICK)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n, c = args.trials, args.concurrency
    print(
        f"jobs of {n} and {2 * n} trials x {args.epochs} epochs on {args.dataset}, widths "
        f"{args.widths}, {c} at once, 1 CPU each"
    )
    one = run_job(trials=n, args=args)
    two = run_job(trials=2 * n, args=args)
    for run in (one, two):
        print(
            f"{run.trials} trials: job wall {run.wall_s:.2f} s (worker {run.worker_s:.2f} s), "
            f"trials' own time {run.trial_s:.2f} s (training steps {run.train_s:.2f} s)"
        )
    per_trial = ((two.wall_s - one.wall_s) - (two.trial_s - one.trial_s) / c) / n
    fixed = one.wall_s - n * per_trial - one.trial_s / c
    print(f"mean trial time: {two.trial_s / two.trials:.2f} s")
    print(f"concurrency (the figures below are for it): {c}")
    print(f"overhead_fixed_s (derived: wall_N - N x per trial - trial_N / {c}): {fixed:.2f}")
    print(f"overhead_ratio ({2 * n} trials): {two.wall_s / (two.trial_s / c):.3f}")
    print(f"overhead_per_trial_s: {per_trial:.3f}")


if __name__ == "__main__":
    main()
