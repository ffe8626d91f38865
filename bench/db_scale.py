"""Query speed on a big study: `pareto`, `trials --where … --limit 50` and `analyze` on 100k
candidates.

Fills a fresh SQLite database (or ``--db URL``, which must be empty or upgraded) with one job of
the default space (mnist5k, 3 stages, 46,656 architectures) and N candidates (default 100,000)
with their ``ps_stages`` rows, by bulk ``executemany`` inserts. Costs come from the analytic cost
model; validation accuracies are synthetic (a per-choice effect plus noise, in steps of 1/500 like
a 500-image validation split). No Optuna trials are written: ``pareto``, ``trials`` and
``analyze`` read only poolstride's tables (``analyze``'s Optuna importances are then skipped; on a
real study of this size they would be computed on the Optuna rows, which this bench does not time).

Timed in-process, calling what the CLI commands call (best of ``--repeat`` runs):

- ``pareto``: :func:`search.query.load_front` (narrow read, front, hypervolume, members' rows);
- ``trials``: :func:`search.query.load_candidates` with
  ``--where s1.downsample=max --where val_acc>0.5 --sort -val_acc --limit 50``;
- ``analyze``: the front, all complete rows with their stages, :func:`stage_analysis`,
  :func:`paired_effects` and the (skipped) importances;

and once as a real ``poolstride pareto`` subprocess (Python and import start-up included).
Target: under 1 s for ``pareto`` and the filtered ``trials`` on SQLite. The last line is
``db_scale_pareto_s: X``.

    .venv/bin/python bench/db_scale.py [--candidates 100000] [--repeat 3] [--db URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.analysis import importances, paired_effects, stage_analysis
from search.config import JobConfig
from search.cost import arch_cost
from search.query import load_candidates, load_front
from search.space import ArchSpec, StageSpec
from search.store import Store, optuna_storage, upgrade

# bulk INSERTs of 100k rows: the Store writes one candidate per transaction, no public bulk path
from search.store._models import Candidate, Stage

TARGET_S = 1.0
WHERE = ("s1.downsample=max", "val_acc>0.5")
_EFFECT = {
    "max": 0.0,
    "avg": -0.01,
    "strided": -0.005,
    "conv": 0.01,
    3: 0.0,
    5: 0.004,
    7: 0.002,
    "none": 0.0,
    "proj": 0.006,
    "pool": 0.004,
}


def fill(url: str, n: int, seed: int) -> int:
    """One job and ``n`` complete candidates with their stages; returns the job id."""
    config = JobConfig.from_mapping({"dataset": "mnist5k", "trials": n, "epochs": 1})
    space = config.space
    with Store.open(url, create=True) as store:
        job = store.submit(config)
        rng = np.random.default_rng(seed)
        picks = {
            key: rng.integers(0, len(values), size=n)
            for key, values in space.distributions().items()
        }
        costs: dict[tuple[Any, ...], Any] = {}
        cand_rows, stage_rows = [], []
        with store.session() as s:
            first_id = (
                s.query(Candidate.id).order_by(Candidate.id.desc()).limit(1).scalar() or 0
            ) + 1
        noise = rng.normal(0, 0.02, size=n)
        for i in range(n):
            stages = []
            for st_i, st in enumerate(space.stages, 1):
                stages.append(
                    StageSpec(
                        st.downsample[picks[f"s{st_i}.downsample"][i]],
                        st.kernel[picks[f"s{st_i}.kernel"][i]],
                        st.skip[picks[f"s{st_i}.skip"][i]],
                        st.width[0],
                        st.depth[0],
                    )
                )
            key = tuple(stages)
            if key not in costs:
                arch = ArchSpec(key)
                costs[key] = (arch, arch_cost(arch, input_shape=space.input_shape))
            arch, cost = costs[key]
            acc = 0.9 + sum(_EFFECT[v] for s in stages for v in (s.downsample, s.kernel, s.skip))
            acc = round(min(max(acc + noise[i], 0.0), 1.0) * 500) / 500
            cid = first_id + i
            cand_rows.append(
                {
                    "id": cid,
                    "job_id": job.id,
                    "trial_number": i,
                    "optuna_trial_id": None,
                    "state": "complete",
                    "arch_json": arch.canonical_json(),
                    "arch_hash": arch.hash(),
                    "val_acc": acc,
                    "test_acc": acc - 0.004,
                    "flops": cost.flops,
                    "params": cost.params,
                    "activation_bytes": cost.activation_bytes,
                    "receptive_field": cost.receptive_field,
                    "latency_ms": 0.01 + cost.flops / 1e9,
                    "train_s": 5.0 + cost.flops / 1e7,
                    "epochs_done": 1,
                    "epochs_total": 1,
                    "device": "bench",
                    "seed": 0,
                    "attempt": 1,
                    "worker_id": "bench",
                    "error": None,
                    "started_at": job.created_at,
                    "finished_at": job.created_at,
                }
            )
            stage_rows += [
                {"candidate_id": cid, "stage": j, **st.to_dict()} for j, st in enumerate(stages, 1)
            ]
        with store.session(write=True) as s:
            for start in range(0, n, 20_000):
                s.execute(insert(Candidate), cand_rows[start : start + 20_000])
            for start in range(0, len(stage_rows), 60_000):
                s.execute(insert(Stage), stage_rows[start : start + 60_000])
        return job.id


def add_scale_args(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`scaled_database`."""
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", help="Database URL (default: a fresh SQLite file).")


@contextlib.contextmanager
def scaled_database(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """``--db`` or a fresh SQLite file (removed afterwards), upgraded and filled with
    ``--candidates`` candidates of one job; yields ``(url, job_id)``."""
    with tempfile.TemporaryDirectory(prefix="ps-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'scale.db'}"
        upgrade(url)
        start = time.perf_counter()
        job_id = fill(url, args.candidates, args.seed)
        print(
            f"filled {args.candidates:,} candidates (+{3 * args.candidates:,} stage rows) "
            f"in {time.perf_counter() - start:.1f} s: {url}"
        )
        yield url, job_id


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scale_args(parser)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with scaled_database(args) as (url, job_id):
        with Store.open(url) as store:
            pareto_s, front = best_of(args.repeat, lambda: load_front(store, job_id))
            trials_s, rows = best_of(
                args.repeat,
                lambda: load_candidates(store, job_id, where=WHERE, sort="-val_acc", limit=50),
            )

            def analyze() -> tuple[Any, Any, Any]:
                load_front(store, job_id)
                frame = load_candidates(store, job_id, where=["state=complete"])
                return (
                    stage_analysis(frame),
                    paired_effects(frame),
                    importances(optuna_storage(url), store.get_job(job_id).study_name),
                )

            analyze_s, (stages, effects, found) = best_of(args.repeat, analyze)

        env = {**os.environ, "POOLSTRIDE_DB": url}
        start = time.perf_counter()
        command = str(Path(sys.executable).with_name("poolstride"))
        proc = subprocess.run(
            [command, "pareto", str(job_id), "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        cli_s = time.perf_counter() - start
        assert proc.stdout.startswith("[")

    print(
        f"pareto:  {pareto_s:.3f} s  ({pareto_s / TARGET_S:.2f}x the {TARGET_S:.0f} s target)"
        f"  front {len(front.members)} of {front.complete:,}, hypervolume "
        f"{front.hypervolume:.4f}"
    )
    print(
        f"trials --where {' --where '.join(WHERE)} --sort -val_acc --limit 50:  "
        f"{trials_s:.3f} s  ({trials_s / TARGET_S:.2f}x the target)  {len(rows)} rows"
    )
    print(
        f"analyze: {analyze_s:.3f} s  (no target)  {len(stages)} stage rows, "
        f"{len(effects)} paired effects, importances "
        f"{'skipped (no Optuna trials)' if not found else len(found)}"
    )
    print(f"poolstride pareto (subprocess, start-up included): {cli_s:.3f} s")
    print(f"db_scale_pareto_s: {pareto_s:.3f}")


if __name__ == "__main__":
    main()
