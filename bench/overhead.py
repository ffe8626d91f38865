"""Orchestration overhead: a search of N short trials through the whole stack.

Queue (SQLite), worker, Ray Tune, Optuna and the database, exactly as ``poolstride run`` uses
them. Prints the job's wall time (claim to finish; the worker's one-off Ray start is printed
apart), the sum of the trials' own time (training, evaluation and latency measurement, timed
inside each trial), and

    overhead_ratio = job wall time / (sum of trial times / concurrency)

1.0 would be no overhead at all. Target: at most 1.25 on a 2-core machine, 2 trials at once.

    .venv/bin/python bench/overhead.py [--trials 12] [--epochs 3] [--dataset mnist5k]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.config import JobConfig
from search.store import Store, optuna_storage
from workers.daemon import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--widths", default="16,32")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        config = JobConfig.from_mapping(
            {
                "dataset": args.dataset,
                "trials": args.trials,
                "epochs": args.epochs,
                "concurrency": args.concurrency,
                "cpus_per_trial": 1,
                "sampler": "random",
                "space": {"widths": [int(w) for w in args.widths.split(",")]},
            }
        )
        with Store.open(url, create=True) as store:
            job = store.submit(config)
        t0 = time.perf_counter()
        Worker(url).run(job_id=job.id)
        total = time.perf_counter() - t0
        with Store.open(url) as store:
            done = store.get_job(job.id)
            rows = store.list_candidates(job.id, state="complete")
        trials = optuna.load_study(study_name=done.study_name, storage=optuna_storage(url)).trials
    assert done.status == "succeeded", done.error
    assert done.started_at is not None and done.finished_at is not None
    wall = (done.finished_at - done.started_at).total_seconds()
    trial_s = sum(t.user_attrs["trial_s"] for t in trials if "trial_s" in t.user_attrs)
    train_s = sum(r.train_s or 0.0 for r in rows)
    ideal = trial_s / args.concurrency
    print(
        f"search: {args.trials} trials x {args.epochs} epochs on {args.dataset}, widths "
        f"{args.widths}, {args.concurrency} at once"
    )
    print(f"worker total (incl. Ray start): {total:.2f} s")
    print(f"job wall time (claim to finish): {wall:.2f} s")
    print(f"sum of trial times: {trial_s:.2f} s (of which training steps {train_s:.2f} s)")
    print(
        f"mean trial time: {trial_s / len(rows):.2f} s; overhead per trial: "
        f"{(wall - ideal) * args.concurrency / len(rows):.2f} s"
    )
    print(f"overhead_ratio: {wall / ideal:.3f}")


if __name__ == "__main__":
    main()
