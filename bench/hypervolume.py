"""Many-objective hypervolume: moocore (what ``search.pareto`` runs) against the slicing
recursion it replaced, on the same random fronts, side by side in one run.

Prints per front (objectives × points) both times, their ratio and the largest difference of
the two values, then as the last line ``hypervolume_speedup: X`` (the median ratio).

    .venv/bin/python bench/hypervolume.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "search")]

from test_pareto import _slicing_hv  # noqa: E402  (the old implementation, kept as the oracle)

# the private kernel, not search.pareto.hypervolume: its frame work (2-4 ms) would swamp moocore
from search.pareto import _hv, pareto_mask  # noqa: E402

FRONTS = ((3, 100), (3, 400), (4, 50), (4, 100), (5, 40))


def _best(fn: object, *args: object, repeats: int) -> tuple[float, float]:
    times, value = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn(*args)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ratios = []
    _hv(np.full((1, 3), 0.5), np.ones(3))  # load moocore's library before timing it
    print(f"{'front':>10}  {'slicing s':>10}  {'moocore s':>10}  {'ratio':>8}  max |diff|")
    for k, n in FRONTS:
        raw = rng.random((n, k))
        points = raw / np.linalg.norm(raw, axis=1, keepdims=True)  # all on the front
        points = np.unique(points[pareto_mask(points)], axis=0)
        ref = np.full(k, 1.1)
        old_s, old = _best(_slicing_hv, points, ref, repeats=args.repeats)
        new_s, new = _best(_hv, points, ref, repeats=args.repeats)
        ratios.append(old_s / new_s)
        print(
            f"{f'{k}x{len(points)}':>10}  {old_s:>10.4f}  {new_s:>10.6f}  "
            f"{old_s / new_s:>8.0f}  {abs(old - new):.1e}"
        )
    print(f"hypervolume_speedup: {statistics.median(ratios):.0f}")


if __name__ == "__main__":
    main()
