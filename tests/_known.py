"""A job with known candidate rows, whose fronts and per-stage numbers the tests work out by hand.

Two stages (digits, 1x8x8). Costs are given directly (not computed from the architecture), so
the arithmetic in the tests stays small:

====== ======================= ======================= ======= ===== ====== ========
trial  stage 1                 stage 2                 val_acc flops params state
====== ======================= ======================= ======= ===== ====== ========
0      max 3 none              max 3 none              0.80    100   10     complete
1      strided 3 none          max 3 none              0.82    60    10     complete
2      max 5 none              max 3 none              0.85    200   20     complete
3      strided 5 none          max 3 none              0.86    120   20     complete
4      max 3 proj              avg 3 none              0.70    150   5      complete
5      avg 7 pool              conv 7 proj             0.90    400   40     complete
6      max 3 none              max 3 none              -       100   10     failed
7      max 3 none              max 3 none              0.78    100   10     complete
====== ======================= ======================= ======= ===== ====== ========

Trial 7 repeats trial 0's architecture.
"""

from __future__ import annotations

from typing import Any

from search.config import JobConfig
from search.cost import Cost
from search.space import ArchSpec
from search.store import Store

#        trial, stage 1,                   stage 2,               val,  flops, params
ROWS: list[tuple[int, tuple[str, int, str], tuple[str, int, str], float | None, int, int]] = [
    (0, ("max", 3, "none"), ("max", 3, "none"), 0.80, 100, 10),
    (1, ("strided", 3, "none"), ("max", 3, "none"), 0.82, 60, 10),
    (2, ("max", 5, "none"), ("max", 3, "none"), 0.85, 200, 20),
    (3, ("strided", 5, "none"), ("max", 3, "none"), 0.86, 120, 20),
    (4, ("max", 3, "proj"), ("avg", 3, "none"), 0.70, 150, 5),
    (5, ("avg", 7, "pool"), ("conv", 7, "proj"), 0.90, 400, 40),
    (6, ("max", 3, "none"), ("max", 3, "none"), None, 100, 10),
    (7, ("max", 3, "none"), ("max", 3, "none"), 0.78, 100, 10),
]


def arch_of(s1: tuple[str, int, str], s2: tuple[str, int, str]) -> ArchSpec:
    return ArchSpec.from_dict(
        {
            "stages": [
                {"downsample": d, "kernel": k, "skip": s, "width": w}
                for (d, k, s), w in ((s1, 8), (s2, 16))
            ]
        }
    )


def fill(store: Store) -> int:
    """Submit the job and write the rows above; returns the job id."""
    job = store.submit(
        JobConfig.from_mapping(
            {
                "dataset": "digits",
                "trials": 8,
                "epochs": 1,
                "space": {"stages": 2, "widths": [8, 16]},
            }
        )
    )
    for trial, s1, s2, val, flops, params in ROWS:
        cid = store.start_candidate(
            job_id=job.id,
            trial_number=trial,
            optuna_trial_id=None,
            arch=arch_of(s1, s2),
            cost=Cost(params=params, flops=flops, activation_bytes=1000, receptive_field=9),
            seed=0,
            attempt=1,
            worker_id="w",
            epochs_total=1,
        )
        if val is None:
            store.finish_candidate(candidate_id=cid, state="failed", error="boom")
        else:
            store.finish_candidate(
                candidate_id=cid,
                state="complete",
                val_acc=val,
                test_acc=val - 0.01,
                train_s=1.0,
                latency_ms=0.5,
            )
    return job.id


def frame_rows() -> list[dict[str, Any]]:
    """The rows above as the flat records that :func:`search.query.load_candidates` returns."""
    out = []
    for trial, s1, s2, val, flops, params in ROWS:
        row: dict[str, Any] = {
            "trial": trial,
            "state": "failed" if val is None else "complete",
            "val_acc": val,
            "flops": flops,
            "params": params,
        }
        for i, (d, k, s) in enumerate((s1, s2), 1):
            row.update(
                {
                    f"s{i}.downsample": d,
                    f"s{i}.kernel": k,
                    f"s{i}.skip": s,
                    f"s{i}.width": 8 * i,
                    f"s{i}.depth": 1,
                }
            )
        out.append(row)
    return out
