"""The Tune scheduler of early stopping: :mod:`search.halving`'s rule applied to a job's trials.

:class:`HalvingScheduler` reads, from each trial's config (the searcher's suggestion), its
``phase`` (only ``search`` trials are ever stopped: confirm and ablate train fully), ``costs``
(the job's objectives known before training, exact) and ``epochs``; and from each result the
trainer's ``epoch`` (not Tune's ``training_iteration``, which the final and error reports also
advance). At a rung it records the training and continues it or answers ``STOP``.

Tune's STOP path tells the searcher ``on_trial_complete`` with the last result and nothing that
says why, which the searcher would take for a worker going away; so the scheduler files each
decision in :attr:`HalvingScheduler.stopped`, a dict on the driver that the searcher is given
(:class:`workers.searcher.StudySearcher`), and the searcher tells Optuna PRUNED from it.

The records live in the database as the candidates' epoch rows, so a resumed job rebuilds them
(:func:`rungs_from_store`) and decides as the first attempt would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.halving import RungRecord, Rungs, known_costs, rung_epochs
from search.space import ArchSpec
from search.store import Store, epochs_frame

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

__all__ = ["HalvingScheduler", "Stopped", "rungs_from_store"]


class Stopped(NamedTuple):
    """A trial the scheduler stopped: at which epoch, with which ``val_acc``."""

    epoch: int
    val_acc: float


class HalvingScheduler(FIFOScheduler):
    """Stops search trials at their rungs by :mod:`search.halving`'s rule.

    Args:
        rungs: The job's rungs and their records so far (:func:`rungs_from_store`).
        objectives: The job's objectives: those known before training rank beside ``val_acc``.

    Example:
        >>> scheduler = HalvingScheduler(rungs=Rungs(epochs=(1, 3), eta=3),
        ...                              objectives=("val_acc", "flops"))
        >>> tune.TuneConfig(scheduler=scheduler)  # doctest: +SKIP
    """

    # one decision per result: a buffered batch of results would pass a rung unseen
    _supports_buffered_results = False

    def __init__(self, *, rungs: Rungs, objectives: Sequence[str]) -> None:
        super().__init__()
        self.rungs = rungs
        self.objectives = tuple(objectives)
        # Tune trial id -> why it stopped; the searcher takes its entries
        self.stopped: dict[str, Stopped] = {}

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> str:
        config = trial.config
        epoch = result.get("epoch")
        val_acc = result.get("val_acc")
        if (
            config.get("phase") != "search"
            or epoch is None
            or val_acc is None
            or not math.isfinite(val_acc)
            or int(epoch) not in self.rungs.epochs
            or int(epoch) >= int(config["epochs"])
        ):
            return TrialScheduler.CONTINUE
        costs = known_costs(self.objectives, config["costs"])
        record = RungRecord(float(val_acc), tuple(float(costs[n]) for n in costs))
        training = (ArchSpec.from_dict(config["arch"]).hash(), int(config["seed"]))
        if self.rungs.add(epoch=int(epoch), training=training, record=record):
            return TrialScheduler.CONTINUE
        self.stopped[trial.trial_id] = Stopped(int(epoch), float(val_acc))
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        counts = ", ".join(f"{e}: {len(self.rungs.records(e))}" for e in self.rungs.epochs)
        return f"mo-asha, eta {self.rungs.eta}, records per rung {{{counts}}}"

    # Tune snapshots its scheduler with the experiment; the epoch rows are its state
    def __getstate__(self) -> dict[str, Any]:
        return {"objectives": self.objectives}


def rungs_from_store(
    store: Store,
    job_id: int,
    *,
    objectives: Sequence[str],
    min_epochs: int,
    eta: int,
    epochs: int,
) -> Rungs:
    """The job's rungs with the records its epoch rows hold: each search training the job ran
    (not served by the cache) that reached a rung, once per architecture and seed (a re-run
    after a lost worker counts once, with the first run's value), in trial order.

    Example:
        >>> rungs = rungs_from_store(store, 1, objectives=("val_acc", "flops"), min_epochs=1,
        ...                          eta=3, epochs=9)  # doctest: +SKIP
        >>> [len(rungs.records(e)) for e in rungs.epochs]  # doctest: +SKIP
        [12, 4]
    """
    rungs = Rungs(epochs=rung_epochs(min_epochs=min_epochs, eta=eta, epochs=epochs), eta=eta)
    candidates = {
        c.trial_number: c
        for c in store.list_candidates(job_id)
        if c.phase == "search" and c.cached_from is None
    }
    points = epochs_frame(store, job_id)
    for trial, epoch, val_acc in points[["trial_number", "epoch", "val_acc"]].itertuples(
        index=False
    ):
        row = candidates.get(int(trial))
        if (
            row is None
            or int(epoch) not in rungs.epochs
            or val_acc is None
            or not math.isfinite(val_acc)
        ):
            continue
        costs = known_costs(objectives, vars(row))
        record = RungRecord(float(val_acc), tuple(float(v) for v in costs.values()))
        rungs.record(epoch=int(epoch), training=(row.arch_hash, row.seed), record=record)
    return rungs
