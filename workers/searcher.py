"""The Tune searcher of a job: asks its Optuna study for architectures and tells it the results.

Why a searcher of our own instead of Ray's ``OptunaSearch``: that searcher tells Optuna
COMPLETE with partial values when a trial is stopped, leaves a trial RUNNING forever when
``tell`` raises, re-enqueues its start points on every resume and replays the sampler's random
draws after a restart. :class:`StudySearcher` drives the study by ask/tell itself:

- a trial that raises or yields a non-finite objective is FAIL with its error, and the job goes on;
- a trial stopped before its last epoch is PRUNED (partial metrics in user attributes), never
  COMPLETE;
- an architecture the space rejects is told FAIL before any training and uses no budget;
- the budget counts COMPLETE trials only, so the job ends with exactly ``trials`` of them;
- trials left RUNNING by a dead worker are failed and enqueued again with the same architecture
  (:meth:`search.study.JobStudy.recover`), and the sampler is seeded afresh on each attempt
  (:func:`search.study.open_study`) so it does not replay earlier draws.

It writes only to the study, and each trial's metrics go into its user attributes before the
trial is told: poolstride's own rows follow from there (:mod:`workers.recorder`).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search.config import JobConfig
from search.cost import Cost, arch_cost
from search.space import ArchSpec
from search.store import OUTAGE, db_errors, retrying
from search.study import JobStudy, trial_seed

__all__ = ["StopRequest", "StudySearcher"]

# what a complete trial's user attributes keep of its final result
_RESULT_ATTRS = (
    "val_acc",
    "test_acc",
    "latency_ms",
    "train_s",
    "trial_s",
    "device",
    "ray_node",
    "cuda_visible_devices",
    "epochs_done",
)


# why a job stops before its end: the user cancelled it, the worker is shutting down, the
# worker's own code failed, the job finished, or another worker took the job over
StopReason = Literal["cancel", "shutdown", "error", "done", "lease lost"]


class StopRequest:
    """Asks a running job to stop; ``reason`` is the first :data:`StopReason` given.

    Example:
        >>> stop = StopRequest()
        >>> stop.set("cancel"); stop.set("shutdown")
        >>> stop.is_set(), stop.reason
        (True, 'cancel')
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: StopReason | None = None

    def set(self, reason: StopReason) -> None:
        """Ask to stop; the first reason given is the one kept."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a stop; returns whether one was asked for."""
        return self._event.wait(timeout)


@dataclass
class _Live:
    trial: optuna.Trial
    arch: ArchSpec
    cost: Cost
    epochs_seen: int = 0
    last: dict[str, Any] = field(default_factory=dict)


class StudySearcher(Searcher):
    """A Tune searcher that asks and tells a job's Optuna study.

    Each suggestion is ``{"arch": ..., "seed": ..., "trial_number": ...}``; a trial's results
    are expected to carry ``epoch`` per epoch and ``final`` (with the metrics) or ``error`` at
    the end.

    Args:
        study: The job's study.
        config: The job config (space, budget, objectives, seed).
        num_classes: Classes of the loaded dataset.
        input_shape: ``(C, H, W)`` of the loaded dataset.
        stop: Set when the job must stop; trials then in flight are failed and enqueued again
            (shutdown) or pruned (cancel).
        on_progress: Called with ``(completed, failed)`` after every finished trial.

    Example:
        >>> searcher = StudySearcher(study=job_study, config=config, num_classes=10,
        ...                          input_shape=(1, 8, 8), stop=StopRequest())  # doctest: +SKIP
        >>> searcher.suggest("t1")["trial_number"]  # doctest: +SKIP
        0
    """

    def __init__(
        self,
        *,
        study: JobStudy,
        config: JobConfig,
        num_classes: int,
        input_shape: tuple[int, int, int],
        stop: StopRequest,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__()
        self.job, self.study, self.config = study, study.study, config
        self.num_classes, self.input_shape = num_classes, input_shape
        self.stop, self.on_progress = stop, on_progress
        self.live: dict[str, _Live] = {}
        self.completed = sum(
            t.state == TrialState.COMPLETE for t in retrying(self.study.get_trials, deepcopy=False)
        )
        self.failed = 0
        self.last_error: str | None = None
        # a budget's worth of failures in one run means something is broken, not unlucky
        self.max_failures = max(3, config.trials)

    def set_search_properties(self, metric: Any, mode: Any, config: Any, **spec: Any) -> bool:
        return True

    # The study in the database is the searcher's state, and a resumed job builds a new
    # searcher from it; Tune's own experiment snapshots only need something picklable.
    def save(self, checkpoint_path: str) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:
        return {"study_name": self.study.study_name}

    @property
    def exhausted(self) -> bool:
        """Whether so many trials failed in this run that the job should give up."""
        return self.failed >= self.max_failures

    # Tune's annotation leaves out Searcher.FINISHED, which its own loop expects
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if self.stop.is_set() or self.completed >= self.config.trials or self.exhausted:
            return Searcher.FINISHED
        if self.completed + len(self.live) >= self.config.trials:
            return None  # enough in flight; one may still fail and need replacing
        while not self.exhausted:
            trial = self._ask()
            try:
                arch, cost, seed = retrying(self._prepare, trial)
            except ValueError as exc:
                # refused before training: FAIL with the reason, no budget used, ask again
                retrying(trial.set_user_attr, "error", f"rejected: {exc}")
                retrying(self.study.tell, trial, state=TrialState.FAIL, skip_if_finished=True)
                self.failed += 1
                self.last_error = str(exc)
                continue
            self.live[trial_id] = _Live(trial, arch, cost)
            return {"arch": arch.to_dict(), "seed": seed, "trial_number": trial.number}
        return Searcher.FINISHED

    def _ask(self) -> optuna.Trial:
        try:
            return self.study.ask()
        except db_errors() as exc:
            # ask may have created the trial and lost the connection while sampling it
            OUTAGE.down(exc)
            return retrying(self._adopt_or_ask)

    def _adopt_or_ask(self) -> optuna.Trial:
        # One worker runs a job, and recover() failed the RUNNING trials of earlier attempts,
        # so a RUNNING trial that no live candidate holds is one this searcher began.
        held = {live.trial.number for live in self.live.values()}
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in held:
                return self.job.resume(frozen.number)
        return self.study.ask()

    def _prepare(self, trial: optuna.Trial) -> tuple[ArchSpec, Cost, int]:
        # Every step is idempotent (a parameter already suggested is read back), so a dropped
        # connection can retry the whole of it.
        self.job.assign_generation(trial)
        arch = self.config.space.sample(trial)
        arch.check_fits(self.input_shape)
        cost = arch_cost(arch, input_shape=self.input_shape, num_classes=self.num_classes)
        # a re-run keeps its original's seed; one whose original died unseeded gets its own
        kept = trial.user_attrs.get("seed")
        seed = int(kept) if kept is not None else trial_seed(self.config.seed, trial.number)
        _set_attrs(trial, {"seed": seed, "arch_hash": arch.hash()})
        return arch, cost, seed

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        live = self.live.get(trial_id)
        if live is None:
            return
        live.last = dict(result)
        if "epoch" in result:
            live.epochs_seen = max(live.epochs_seen, int(result["epoch"]))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        if result:
            self.on_trial_result(trial_id, result)
        last = live.last
        if error or last.get("error"):
            self._fail(live, str(last.get("error") or "the trial process died"))
        elif not last.get("final"):
            self._interrupted(live)
        else:
            self._complete(live, last)
        if self.on_progress:
            self.on_progress(self.completed, self.failed)

    def _complete(self, live: _Live, last: dict[str, Any]) -> None:
        cost = live.cost._asdict()
        try:
            values = [
                float(cost[name] if name in cost else last[name]) for name in self.config.objectives
            ]
        except (KeyError, TypeError, ValueError) as exc:
            self._fail(live, f"objective missing from the result: {exc}")
            return
        if not all(math.isfinite(v) for v in values):
            self._fail(live, f"non-finite objective values {values}")
            return
        attrs = {key: last.get(key) for key in _RESULT_ATTRS}
        attrs["ray_resources"] = json.loads(last.get("ray_resources", "{}"))
        retrying(_set_attrs, live.trial, attrs)
        retrying(self.study.tell, live.trial, values, skip_if_finished=True)
        self.completed += 1

    def _fail(self, live: _Live, message: str) -> None:
        retrying(live.trial.set_user_attr, "error", message)
        retrying(self.study.tell, live.trial, state=TrialState.FAIL, skip_if_finished=True)
        self.failed += 1
        self.last_error = message

    def _interrupted(self, live: _Live) -> None:
        if self.stop.reason == "cancel":
            # the user stopped the job: keep what the trial learnt, as PRUNED
            attrs: dict[str, Any] = {"epochs_done": live.epochs_seen}
            if live.last.get("val_acc") is not None:
                attrs["val_acc"] = live.last["val_acc"]
            retrying(_set_attrs, live.trial, attrs)
            retrying(self.study.tell, live.trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            # the worker is going away: the trial runs again, same architecture, elsewhere
            retrying(
                self.job.requeue, live.trial.number, reason="worker stopped while the trial ran"
            )

    def abandon_live(self) -> None:
        """Tell Optuna about the trials Tune stopped without reporting them back."""
        for trial_id in list(self.live):
            self._interrupted(self.live.pop(trial_id))


def _set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
