"""Multi-objective asynchronous successive halving with known costs (``early_stop = "mo-asha"``).

Pure: no torch, no Ray (the Tune scheduler that applies it is :mod:`workers.scheduler`).

A search candidate's costs (FLOPs, parameters, activation memory: :data:`KNOWN_COSTS`) are
exact before it trains (:func:`search.cost.arch_cost`); only its accuracy is uncertain. So a
candidate that reaches a rung is ranked on its ``val_acc`` at that rung *and* those of the
job's objectives known before training, not on accuracy alone: a cheap candidate with a
mediocre early accuracy can be on the front, an expensive one with the same accuracy is not.

The rule, for a rung at ``e`` epochs (:func:`rung_epochs`: ``min_epochs * eta**k`` below the
job's epochs):

- the rung's records are every search training that reached epoch ``e`` so far, each training
  (architecture and seed) once: a re-run of a training already recorded (after a lost worker)
  keeps the value first recorded and is not counted again;
- with ``n`` records, itself included, a training continues when it is among the first
  ``ceil(n / eta)`` of :func:`rank` (what Ray's ASHA keeps of ``n`` distinct values with its
  percentile cut-off; so the first trial to reach a rung always continues: the cut-off is over
  the trials recorded so far, nobody waits for a full rung);
- :func:`rank` sorts by non-dominated fronts over (``-val_acc``, costs...), within a front by
  crowding distance, largest first, then by the order of recording; with no known cost among
  the objectives it sorts by ``val_acc`` alone, highest first, then by the order of recording.

Example:
    >>> rungs = Rungs(epochs=rung_epochs(min_epochs=1, eta=2, epochs=4), eta=2)
    >>> rungs.epochs
    (1, 2)
    >>> [rungs.add(epoch=1, training=t, record=RungRecord(acc, (flops,)))
    ...  for t, acc, flops in [("a", 0.5, 10), ("b", 0.4, 20), ("c", 0.9, 30), ("d", 0.2, 5)]]
    [True, False, True, True]

    ``d``, the cheapest, continues with the lowest accuracy: of its 4 records 2 continue, and
    the front {a, c, d} (``b`` is dominated by ``a``) has ``c`` and ``d`` at its ends.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from search.cost import Cost
from search.objectives import OBJECTIVES
from search.pareto import pareto_mask

__all__ = [
    "KNOWN_COSTS",
    "RungRecord",
    "Rungs",
    "continues",
    "crowding_distance",
    "keep_count",
    "known_costs",
    "rank",
    "rung_epochs",
]

# the objectives whose value an architecture fixes, known exactly before training
KNOWN_COSTS: tuple[str, ...] = tuple(o for o in OBJECTIVES if o in Cost._fields)


class RungRecord(NamedTuple):
    """What a training showed at a rung: its ``val_acc`` there and its known costs (in the
    order of the job's objectives, all minimised)."""

    val_acc: float
    costs: tuple[float, ...] = ()


def known_costs(objectives: Sequence[str], cost: Mapping[str, float]) -> dict[str, float]:
    """The objectives among ``objectives`` known before training, with their values in
    ``cost`` (an architecture's :class:`~search.cost.Cost` as a mapping).

    Example:
        >>> known_costs(["val_acc", "flops", "latency_ms"], {"flops": 120, "params": 7})
        {'flops': 120}
    """
    return {name: cost[name] for name in objectives if name in KNOWN_COSTS}


def rung_epochs(*, min_epochs: int, eta: int, epochs: int) -> tuple[int, ...]:
    """The rungs, ``min_epochs * eta**k`` for ``k = 0, 1, ...``, below ``epochs`` (a trial at
    its last epoch has nothing left to save).

    Example:
        >>> rung_epochs(min_epochs=1, eta=3, epochs=10), rung_epochs(min_epochs=2, eta=2, epochs=8)
        ((1, 3, 9), (2, 4))
        >>> rung_epochs(min_epochs=1, eta=3, epochs=1)
        ()
    """
    if min_epochs < 1 or eta < 2:
        raise ValueError(f"min_epochs {min_epochs} must be at least 1 and eta {eta} at least 2")
    out: list[int] = []
    rung = min_epochs
    while rung < epochs:
        out.append(rung)
        rung *= eta
    return tuple(out)


def keep_count(n: int, *, eta: int) -> int:
    """How many of ``n`` records of a rung continue: ``ceil(n / eta)``.

    Example:
        >>> [keep_count(n, eta=3) for n in range(1, 8)]
        [1, 1, 1, 2, 2, 2, 3]
    """
    return -(-n // eta)


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row of ``losses`` (one front, n × k).

    Per objective whose values differ within the front, the two extreme rows get infinity and
    each other row the gap between its neighbours, in units of the objective's range; an
    objective equal over the whole front adds nothing.

    Example:
        >>> crowding_distance(np.array([[0.0, 4.0], [1.0, 1.0], [4.0, 0.0]])).tolist()
        [inf, 2.0, inf]
    """
    values = np.asarray(losses, dtype=np.float64)
    distance = np.zeros(len(values))
    for column in values.T:
        span = column.max() - column.min() if len(column) else 0.0
        if span == 0:
            continue
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        distance[order[0]] = distance[order[-1]] = np.inf
        distance[order[1:-1]] += (ordered[2:] - ordered[:-2]) / span
    return distance


def rank(records: Sequence[RungRecord]) -> list[int]:
    """The indices of ``records``, best first (see the module for the order).

    Example:
        >>> rank([RungRecord(0.5, (10,)), RungRecord(0.9, (30,)), RungRecord(0.4, (40,))])
        [0, 1, 2]
        >>> rank([RungRecord(0.5), RungRecord(0.9), RungRecord(0.5)])
        [1, 0, 2]
    """
    if not records:
        return []
    widths = {len(r.costs) for r in records}
    if len(widths) != 1:
        raise ValueError("the records of a rung must have the same costs")
    if widths == {0}:
        return sorted(range(len(records)), key=lambda i: (-records[i].val_acc, i))
    losses = np.array([(-r.val_acc, *r.costs) for r in records], dtype=np.float64)
    left = np.arange(len(records))
    out: list[int] = []
    while len(left):
        mask = pareto_mask(losses[left])
        front = left[mask]
        distance = crowding_distance(losses[front])
        out.extend(int(front[j]) for j in sorted(range(len(front)), key=lambda j: -distance[j]))
        left = left[~mask]
    return out


def continues(records: Sequence[RungRecord], index: int, *, eta: int) -> bool:
    """Whether record ``index`` of a rung's ``records`` (itself included) continues: it is
    among the first :func:`keep_count` of :func:`rank`.

    Example:
        >>> continues([RungRecord(0.9, (50,)), RungRecord(0.2, (10,)), RungRecord(0.5, (60,))],
        ...           1, eta=3)
        False
    """
    return index in rank(records)[: keep_count(len(records), eta=eta)]


class Rungs:
    """The records of a job's rungs, and the decisions taken on them.

    Args:
        epochs: The rungs (:func:`rung_epochs`).
        eta: A rung keeps the best ``1/eta`` (:func:`keep_count`).

    Example:
        >>> rungs = Rungs(epochs=(1,), eta=2)
        >>> rungs.add(epoch=1, training=("h", 0), record=RungRecord(0.5))
        True
        >>> rungs.add(epoch=1, training=("g", 0), record=RungRecord(0.3))
        False
        >>> rungs.add(epoch=1, training=("g", 0), record=RungRecord(0.9))  # a re-run: counted once
        False
        >>> len(rungs.records(1))
        2
    """

    def __init__(self, *, epochs: Sequence[int], eta: int) -> None:
        self.epochs = tuple(epochs)
        self.eta = eta
        self._records: dict[int, dict[Hashable, RungRecord]] = {e: {} for e in self.epochs}

    def record(self, *, epoch: int, training: Hashable, record: RungRecord) -> None:
        """Record ``training`` at rung ``epoch``, unless recorded there already: then its first
        record stands."""
        self._records[epoch].setdefault(training, record)

    def add(self, *, epoch: int, training: Hashable, record: RungRecord) -> bool:
        """:meth:`record`, then whether ``training`` continues past rung ``epoch``."""
        self.record(epoch=epoch, training=training, record=record)
        records = self._records[epoch]
        return continues(list(records.values()), list(records).index(training), eta=self.eta)

    def records(self, epoch: int) -> list[RungRecord]:
        """The records of rung ``epoch``, in the order they were recorded."""
        return list(self._records[epoch].values())
