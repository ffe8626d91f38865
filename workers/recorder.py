"""Poolstride's record of a job's trials: candidate rows, learning curves and weight files.

:class:`Recorder` is a Tune callback beside :class:`workers.searcher.StudySearcher`, and the rows
it writes follow the study rather than the searcher. Tune notifies the searcher of a result or a
trial's end before its callbacks (``tune.Callback`` documents it), so when a trial's end reaches
the recorder, the searcher has already written the trial's metrics and told Optuna; the row
then copies what Optuna holds (:func:`search.study.record_trial_end`). A worker that dies between
the two leaves a ``running`` row under a finished trial, which
:meth:`search.study.JobStudy.recover` completes from the same trial. Should a trial's end reach
the recorder while Optuna still holds the trial unfinished, the recorder warns and leaves the
row and the weights alone, for :meth:`Recorder.close_open` or the recovery to end.

Weights are filed when a trial's final result arrives, before the searcher tells Optuna, so a
COMPLETE trial's weights are on disk; a trial that ends otherwise loses its file. The driver
writes everything here, so a trial process needs no database connection and nodes need no
shared disk.

A trial the result cache serves never reaches Tune: the searcher has the recorder write its
row (:meth:`Recorder.start_cached`, :meth:`Recorder.end_cached`), with the source's curve, and
its weights are the source's file, hard-linked (or copied) from the source job's folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial

from search.artifacts import KeepWeights
from search.cost import Cost, arch_cost
from search.query import load_front
from search.space import ArchSpec
from search.store import CachedResult, Store, retrying
from search.study import JobStudy, record_trial_end
from search.vocabulary import Phase

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


@dataclass
class _Row:
    candidate_id: int
    number: int
    epochs_seen: int = 0


class Recorder(tune.Callback):
    """Writes each trial's candidate row, curve and weights (see the module).

    Args:
        study: The job's study, which the rows follow.
        store: Where the rows and curves go.
        job_id: The job the candidates belong to.
        attempt: The job's attempt number (recorded on each candidate).
        worker_id: The worker running the job.
        epochs_total: The epochs each candidate is to train.
        num_classes: Classes of the loaded dataset.
        input_shape: ``(C, H, W)`` of the loaded dataset.
        weights_dir: Where complete candidates' weights go (``trial-<n>.pt``): the job's
            folder of the artifact layout (``<artifacts>/job-<id>``), beside which the folders
            of the jobs that cached results come from lie.
        keep_weights: ``front`` (only the final front's survive a successful job), ``all``
            or ``none``.

    Example:
        >>> recorder = Recorder(study=job_study, store=store, job_id=1, attempt=1,
        ...                     worker_id="w1", epochs_total=2, num_classes=10,
        ...                     input_shape=(1, 8, 8), weights_dir=Path("w"),
        ...                     keep_weights="front")  # doctest: +SKIP
        >>> tune.RunConfig(callbacks=[recorder])  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        study: JobStudy,
        store: Store,
        job_id: int,
        attempt: int,
        worker_id: str,
        epochs_total: int,
        num_classes: int,
        input_shape: tuple[int, int, int],
        weights_dir: Path | None,
        keep_weights: KeepWeights,
    ) -> None:
        self.study, self.store = study, store
        self.job_id, self.attempt, self.worker_id = job_id, attempt, worker_id
        self.epochs_total = epochs_total
        self.num_classes, self.input_shape = num_classes, input_shape
        self.weights_dir = weights_dir if keep_weights != "none" else None
        self.keep_weights = keep_weights
        self._rows: dict[str, _Row] = {}
        self._closed: set[str] = set()
        self._trials: list[Trial] = []

    @property
    def keeps_weights(self) -> bool:
        """Whether trials should send their trained weights back."""
        return self.weights_dir is not None

    # Tune snapshots its callbacks with the experiment; the database is the recorder's state.
    def __getstate__(self) -> dict[str, Any]:
        return {"job_id": self.job_id}

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._open(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        row = self._open(trial)
        if "epoch" in result and result["epoch"] > row.epochs_seen:
            row.epochs_seen = int(result["epoch"])
            retrying(
                self.store.record_epoch,
                candidate_id=row.candidate_id,
                epoch=row.epochs_seen,
                val_acc=float(result["val_acc"]),
                train_loss=float(result["train_loss"]),
                seconds=float(result["epoch_s"]),
            )
        # filed now, and dropped from the result Tune keeps for every trial
        weights = result.pop("weights", None)
        if weights and self.weights_dir is not None:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            path = _weights_file(self.weights_dir, row.number)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(weights)
            tmp.replace(path)  # a reader never sees half a file

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._close(trial)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._close(trial)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._trials = list(trials)

    def close_open(self) -> None:
        """End the rows of the trials Tune stopped without reporting back.

        Call it after the searcher told Optuna about them
        (:meth:`workers.searcher.StudySearcher.abandon_live`).
        """
        for trial in self._trials:
            self._close(trial)

    def prune_weights(self) -> None:
        """At a job's success, keep only the weights of every trial of the front's
        architectures (:func:`search.query.load_front`, over the means of their seeds) if the
        job keeps ``front``."""
        if self.weights_dir is None or self.keep_weights != "front":
            return
        members = retrying(load_front, self.store, self.job_id).members
        keep = {
            _weights_file(self.weights_dir, number)
            for trials in members["trials"]
            for number in trials
        }
        for path in self.weights_dir.glob("trial-*.pt"):
            if path not in keep:
                path.unlink()

    def start_cached(
        self,
        *,
        number: int,
        arch: ArchSpec,
        cost: Cost,
        seed: int,
        phase: Phase,
        replicate: int,
        reference: int | None,
        cache_key: str,
        source: CachedResult,
    ) -> int:
        """The row of trial ``number``, which the cache serves from ``source``: ``running``,
        with the source's curve; returns its id. Write it before Optuna is told, so that a
        crash leaves a row the recovery ends from the trial."""
        return self.store.start_candidate(
            job_id=self.job_id,
            trial_number=number,
            optuna_trial_id=self.study.trial_id(number),
            arch=arch,
            cost=cost,
            seed=seed,
            attempt=self.attempt,
            worker_id=self.worker_id,
            epochs_total=self.epochs_total,
            phase=phase,
            replicate=replicate,
            reference=reference,
            cache_key=cache_key,
            cached_from=source.candidate_id,
        )

    def end_cached(self, *, candidate_id: int, number: int, source: CachedResult) -> None:
        """End the row of a cache hit as Optuna holds its trial; a COMPLETE one gets the
        source's weights file, where the source has one and this job keeps weights."""
        frozen = self.study.frozen_trial(number)
        record_trial_end(
            self.store, candidate_id=candidate_id, trial=frozen, epochs_done=source.epochs_done
        )
        if frozen.state != TrialState.COMPLETE or self.weights_dir is None:
            return
        folder = (
            self.weights_dir
            if source.job_id == self.job_id
            else self.weights_dir.parent / f"job-{source.job_id}"
        )
        origin = _weights_file(folder, source.trial_number)
        if not origin.is_file():
            return  # the source job kept no weights, or pruned them
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = _weights_file(self.weights_dir, number)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(origin, tmp)  # one file on disk for both; pruning either keeps the other
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(origin, tmp)
        tmp.replace(path)

    def _open(self, trial: Trial) -> _Row:
        row = self._rows.get(trial.trial_id)
        if row is None:
            config = trial.config
            arch = ArchSpec.from_dict(config["arch"])
            number = int(config["trial_number"])
            candidate_id = retrying(
                self.store.start_candidate,
                job_id=self.job_id,
                trial_number=number,
                optuna_trial_id=retrying(self.study.trial_id, number),
                arch=arch,
                cost=arch_cost(arch, input_shape=self.input_shape, num_classes=self.num_classes),
                seed=int(config["seed"]),
                attempt=self.attempt,
                worker_id=self.worker_id,
                epochs_total=self.epochs_total,
                phase=config["phase"],
                replicate=int(config["replicate"]),
                reference=config["reference"],
                cache_key=config["cache_key"],
                gpu_share=config["gpu_share"] or None,  # NULL on the CPU
            )
            row = self._rows[trial.trial_id] = _Row(candidate_id, number)
        return row

    def _close(self, trial: Trial) -> None:
        if trial.trial_id in self._closed:
            return
        row = self._open(trial)
        frozen = retrying(self.study.frozen_trial, row.number)
        if not frozen.state.is_finished():
            # Tune is meant to tell the searcher first; if it did not, a row closed now would
            # copy a live trial and its weights would go before Optuna decides on them
            log.warning(
                "trial %s ended in Tune while Optuna still holds it %s; its candidate row is "
                "left open",
                row.number,
                frozen.state.name,
            )
            return
        retrying(
            record_trial_end,
            self.store,
            candidate_id=row.candidate_id,
            trial=frozen,
            epochs_done=row.epochs_seen,
        )
        if frozen.state != TrialState.COMPLETE and self.weights_dir is not None:
            _weights_file(self.weights_dir, row.number).unlink(missing_ok=True)
        self._closed.add(trial.trial_id)


def _weights_file(weights_dir: Path, number: int) -> Path:
    return weights_dir / f"trial-{number}.pt"
