"""The per-stage question answered two ways on the same data and the same training budget.

1. **search + ablation** (a designed job): the sampler's search, the front confirmed with more
   seeds, then one-choice variants of the most accurate front member, each trained with the
   same seeds, so every effect is a seed-paired difference with a t-interval;
2. **plain search**: the same number of trainings spent by the sampler alone, one seed each;
   its effects are the matched pairs it happens to hold (architectures that differ in one stage
   choice), with their bootstrap intervals.

Both run through ``poolstride run`` on their own SQLite database (no result cache shared), on
the same dataset, split and space. Printed per way: trainings used (what the designed job
trained; the plain search gets as many), wall seconds, per-stage effects stated and how many
of them have an interval that excludes zero; as the last line

    answer_effects_resolved: A vs B

with A the plain search's count and B the designed job's.

    .venv/bin/python bench/answer.py [--dataset D] [--epochs N] [--trials N] [--seeds N]
                                     [--ablate downsample|all] [--widths W,W,W]

Unset flags keep ``poolstride run``'s defaults, so the designed job is the README's main job
and its wall time the main job's.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def poolstride(db: str, *args: str) -> Any:
    """Run one ``poolstride`` command on ``db`` and return its JSON output."""
    out = subprocess.run(
        [sys.executable, "-m", "search.cli", *args, "--db", db],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return json.loads(out.stdout)


def excludes_zero(low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and (low > 0 or high < 0)


def run(db: str, flags: list[str]) -> tuple[dict[str, Any], dict[str, Any], float]:
    """``poolstride run`` with ``flags``; returns the job's status, its analysis and wall time."""
    start = time.perf_counter()
    job = poolstride(db, "run", "--json", *flags)
    wall = time.perf_counter() - start
    status = poolstride(db, "status", str(job["id"]), "--json")
    analysis = poolstride(db, "analyze", str(job["id"]), "--format", "json")
    return status, analysis, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # unset flags keep `poolstride run`'s defaults: the designed job is the README's main job
    for flag in ("--dataset", "--epochs", "--widths", "--val-fraction", "--seed"):
        parser.add_argument(flag)
    parser.add_argument("--trials", help="search-phase trials of the designed job")
    parser.add_argument("--seeds")
    parser.add_argument("--ablate", choices=("downsample", "all"))
    args = parser.parse_args()
    given = vars(args)
    common = [
        item
        for key in ("dataset", "epochs", "widths", "val_fraction", "seed")
        if given[key] is not None
        for item in (f"--{key.replace('_', '-')}", given[key])
    ]
    design = [
        item
        for key in ("trials", "seeds", "ablate")
        if given[key] is not None
        for item in (f"--{key}", given[key])
    ]

    with tempfile.TemporaryDirectory() as tmp:
        designed_status, designed, designed_s = run(
            f"sqlite:///{tmp}/designed.db", [*common, *design]
        )
        # the GPU budget is what was trained; results served by the cache cost nothing
        budget = int(designed_status["trained"])
        plain_status, plain, plain_s = run(
            f"sqlite:///{tmp}/plain.db",
            [*common, "--trials", str(budget), "--seeds", "1", "--ablate", "none"],
        )

    effects = designed["effects"]
    resolved_b = sum(e["verdict"] in ("better", "worse") for e in effects)
    pairs = plain["matched_pairs"]
    resolved_a = sum(
        excludes_zero(p.get("delta_val_acc_lo"), p.get("delta_val_acc_hi")) for p in pairs
    )
    config = designed_status["config"]
    print(
        f"dataset {config['dataset']}, {config['epochs']} epochs, widths "
        f"{config['space']['widths']}, validation share {config['val_fraction']}"
    )
    print(
        f"search + ablation: {config['trials']} search trials, {config['seeds']} seeds, "
        f"--ablate {config['ablate']}: {designed_status['trained']} trained + "
        f"{designed_status['cached']} from the cache, {designed_s:.0f} s; {len(effects)} "
        f"effects stated, {resolved_b} with a 95 % t-interval that excludes zero"
    )
    for e in effects:
        print(f"  {e['text']}")
    for r in designed["recommendations"]:
        print(f"  {r['text']}")
    print(
        f"plain search: {budget} trials, 1 seed: {plain_status['trained']} trained + "
        f"{plain_status['cached']} from the cache, {plain_s:.0f} s; {len(pairs)} matched-pair "
        f"effects stated, {resolved_a} with a bootstrap interval that excludes zero"
    )
    for p in pairs:
        lo, hi = p.get("delta_val_acc_lo"), p.get("delta_val_acc_hi")
        interval = (
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"
            if lo is not None and hi is not None and math.isfinite(lo)
            else "(no interval)"
        )
        print(
            f"  stage {p['stage']}: {p['choice']} {p['alternative']} instead of "
            f"{p['baseline']}: {100 * p['delta_val_acc']:+.1f} pt {interval} ({p['pairs']} pairs)"
        )
    print(f"answer_effects_resolved: {resolved_a} vs {resolved_b}")


if __name__ == "__main__":
    main()
