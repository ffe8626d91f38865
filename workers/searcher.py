"""The Tune searcher of a job: asks its Optuna study for trainings and tells it the results.

Why a searcher of our own instead of Ray's ``OptunaSearch``: that searcher tells Optuna
COMPLETE with partial values when a trial is stopped, leaves a trial RUNNING forever when
``tell`` raises, re-enqueues its start points on every resume and replays the sampler's random
draws after a restart. :class:`StudySearcher` drives the study by ask/tell itself:

- a trial that raises or yields a non-finite objective is FAIL with its error, and the job goes on;
- a trial stopped before its last epoch is PRUNED (partial metrics in user attributes), never
  COMPLETE; one the early-stopping scheduler stopped (:mod:`workers.scheduler`, which files
  its decisions where the searcher reads them) has ``stopped_at``, counts toward the search's
  budget and is never enqueued again;
- an architecture the space rejects is told FAIL before any training and uses no budget;
- trials left RUNNING by a dead worker are failed and enqueued again with the same architecture,
  phase, replicate and seed (:meth:`search.study.JobStudy.recover`), and the sampler is seeded
  afresh on each attempt (:func:`search.study.open_study`) so it does not replay earlier draws.

A job runs in phases (:mod:`search.design`): ``search`` asks the sampler until ``trials``
search trials were evaluated, complete or stopped early (failed and rejected ones are
replaced); then ``confirm`` (more
seeds for the front's members, when ``seeds`` > 1) and ``ablate`` (one-choice variants of the
reference architectures, unless ``ablate`` is ``none``), each planned once it can be: its
trials are enqueued in the same study with fixed params and their phase, replicate, seed and
reference as user attributes, and asked and told through a plain handle
(:meth:`search.study.JobStudy.plain`) so the search's sampler never sees them. Planning skips
what the job already holds (the same architecture and replicate, complete, waiting or running,
or a planned trial that failed: those are not retried), so planning again after a crash
enqueues nothing twice; the first plan of a phase is recorded on the job
(:meth:`search.store.Store.record_plan`) with its total.

Before a trial trains, its cache key (architecture, data, resolved settings, seed) is looked up
(:meth:`search.store.Store.find_cached`, unless the job says ``cache = false``): a hit is told
to Optuna at once with the stored values and recorded by the recorder as a candidate
``cached_from`` its source, and nothing trains. A trial whose key another trial of the job is
training waits for that one, then is served from the cache (or trains, if that one failed).

It writes to the study, and each trial's metrics go into its user attributes before the trial
is told; poolstride's rows follow from there (:mod:`workers.recorder`), the rows of cache hits
included, which it has the recorder write.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from search.config import JobConfig
from search.cost import Cost, arch_cost
from search.design import ablate_plan, confirm_plan, pick_references, replicate_seed
from search.halving import known_costs
from search.memory import next_share
from search.pareto import architecture_means, pareto_front
from search.query import load_candidates
from search.space import ArchSpec
from search.store import OUTAGE, CachedResult, Store, db_errors, retrying
from search.study import OOM_RETRY_OF, STOPPED_AT, JobStudy, trial_phase
from search.vocabulary import Phase
from workers.recorder import Recorder
from workers.scheduler import Stopped

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ProgressFn", "StopRequest", "StudySearcher"]

log = logging.getLogger(__name__)

# what a complete trial's user attributes keep of its final result
_RESULT_ATTRS = (
    "val_acc",
    "test_acc",
    "latency_ms",
    "latency_rel",
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


# (phase, done, total, failed) of the phase that moved; total None until it is planned
ProgressFn = Callable[[Phase, int, int | None, int], None]
# (architecture, seed) -> the cache key of that training
# (architecture, seed[, device type]) -> the training's cache key; the device type defaults
# to the one the job's trials are meant to run on
KeyFn = Callable[..., str]
# architecture -> the share of a GPU a trial training it asks Ray for (0 on the CPU)
ShareFn = Callable[[ArchSpec], float]


@dataclass
class _Live:
    """A trial asked and prepared, training in Tune or waiting for another's training."""

    trial: optuna.Trial
    handle: optuna.Study  # the handle that asked it, which tells it
    arch: ArchSpec
    cost: Cost
    phase: Phase
    replicate: int
    reference: int | None
    seed: int
    key: str
    costs: dict[str, float]  # the job's objectives known before training
    epochs: int
    share: float = 0.0
    oom_rerun: bool = False  # a re-run after running out of GPU memory, which gets no other
    epochs_seen: int = 0
    last: dict[str, Any] = field(default_factory=dict)

    def suggestion(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "seed": self.seed,
            "trial_number": self.trial.number,
            "phase": self.phase,
            "replicate": self.replicate,
            "reference": self.reference,
            "cache_key": self.key,
            "costs": self.costs,
            "epochs": self.epochs,
            "gpu_share": self.share,
        }


class StudySearcher(Searcher):
    """A Tune searcher that asks and tells a job's Optuna study, phase by phase.

    Each suggestion is ``{"arch", "seed", "trial_number", "phase", "replicate", "reference",
    "cache_key", "costs", "epochs", "gpu_share"}``; a trial's results are expected to carry
    ``epoch`` per epoch and ``final`` (with the metrics) or ``error`` at the end, with ``oom``
    when the error is CUDA running out of memory. Such a trial is told FAIL and run once more,
    same training, with the next of :data:`search.memory.SHARE_CLASSES` (user attributes
    ``gpu_share`` and ``oom_retry_of``): neither counts as a failure nor uses budget. A second
    out-of-memory error, or one with a whole GPU, is a failure.

    Args:
        study: The job's study.
        config: The job config (space, budget, objectives, seed, phases, cache).
        num_classes: Classes of the loaded dataset.
        input_shape: ``(C, H, W)`` of the loaded dataset.
        stop: Set when the job must stop; trials then in flight are failed and enqueued again
            (shutdown) or pruned (cancel).
        store: The job's database: cache lookups, the front and plans.
        job_id: The job.
        recorder: Writes the rows of cache hits.
        cache_key: The cache key of training an architecture with a seed.
        gpu_share: The GPU share of a trial training an architecture (a ``ValueError`` rejects
            it); ``None``: 0, the CPU.
        on_progress: Called with ``(phase, done, total, failed)`` when a phase starts and after
            every finished trial; ``total`` is ``None`` until the phase is planned.
        stopped: The early-stopping scheduler's decisions
            (:attr:`workers.scheduler.HalvingScheduler.stopped`), which the searcher takes.

    Example:
        >>> searcher = StudySearcher(study=job_study, config=config, num_classes=10,
        ...                          input_shape=(1, 8, 8), stop=StopRequest(), store=store,
        ...                          job_id=1, recorder=recorder,
        ...                          cache_key=lambda arch, seed: "k")  # doctest: +SKIP
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
        store: Store,
        job_id: int,
        recorder: Recorder,
        cache_key: KeyFn,
        gpu_share: ShareFn | None = None,
        on_progress: ProgressFn | None = None,
        stopped: dict[str, Stopped] | None = None,
    ) -> None:
        super().__init__()
        self.job, self.study, self.config = study, study.study, config
        self.num_classes, self.input_shape = num_classes, input_shape
        self.stop, self.on_progress = stop, on_progress
        self.store, self.job_id, self.recorder, self.cache_key = store, job_id, recorder, cache_key
        self.gpu_share: ShareFn = gpu_share or (lambda arch: 0.0)
        self.plain = retrying(study.plain)
        self.phases: list[Phase] = ["search"]
        if config.seeds > 1:
            self.phases.append("confirm")
        if config.ablate != "none":
            self.phases.append("ablate")
        self._at = 0  # index of the phase being worked
        self.live: dict[str, _Live] = {}
        self.pending: list[_Live] = []  # waiting for a trial of the same key to end
        self.ready: list[_Live] = []  # to train, asked before Tune started (settle)
        self.stopped: dict[str, Stopped] = {} if stopped is None else stopped
        self.done: dict[Phase, int] = dict.fromkeys(self.phases, 0)
        self.pruned = 0  # search trials stopped early: evaluated, and in the budget
        for trial in retrying(
            self.study.get_trials, deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
        ):
            if trial.state == TrialState.PRUNED:
                self.pruned += STOPPED_AT in trial.user_attrs
                continue
            phase = trial_phase(trial)
            self.done[phase] = self.done.get(phase, 0) + 1
        self.failures: dict[Phase, int] = dict.fromkeys(self.phases, 0)
        self.totals: dict[Phase, int | None] = {p: None for p in self.phases}
        self.totals["search"] = config.trials
        self.waiting = 0  # WAITING trials of a planned phase, asked through ``plain``
        self.last_error: str | None = None
        # a budget's worth of failed searches in one run means something is broken, not unlucky
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
    def completed(self) -> int:
        """Complete trials of every phase (cache hits included)."""
        return sum(self.done.values())

    @property
    def evaluated(self) -> int:
        """Search trials that count toward the budget: complete or stopped early."""
        return self.done["search"] + self.pruned

    @property
    def failed(self) -> int:
        """Trials that failed in this run, in every phase."""
        return sum(self.failures.values())

    @property
    def exhausted(self) -> bool:
        """Whether so many search trials failed in this run, the search's budget unmet, that
        the job should give up."""
        return self.evaluated < self.config.trials and self.failures["search"] >= self.max_failures

    @property
    def finished(self) -> bool:
        """Whether the search met its budget and every planned trial ended."""
        return self._at >= len(self.phases)

    # Tune's annotation leaves out Searcher.FINISHED, which its own loop expects
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        while not (self.stop.is_set() or self.exhausted):
            live = (self.ready.pop() if self.ready else None) or self._unblocked() or self._next()
            if live is not None:
                self.live[trial_id] = live
                return live.suggestion()
            if self.live or self.pending:
                return None  # wait for what is in flight
            if not self._ended_phase():
                return None
            if self.finished:
                break
        return Searcher.FINISHED

    def _next(self) -> _Live | None:
        """The next trial of the current phase for Tune, or ``None`` if it has none now.

        Cache hits and rejected architectures are dealt with here, and the next trial asked.
        """
        while not (self.finished or self.stop.is_set() or self.exhausted):
            phase = self.phases[self._at]
            if phase == "search":
                busy = sum(t.phase == "search" for t in self._asked())
                if self.evaluated + busy >= self.config.trials:
                    return None  # enough in flight; one may still fail and need replacing
                handle = self.study
            elif self.waiting > 0:
                self.waiting -= 1
                handle = self.plain
            else:
                return None
            trial = self._ask(handle)
            if handle is self.plain and trial_phase(trial) == "search":
                # a search trial enqueued again after a lost worker, which the search no
                # longer needs (or, had the count of waiting trials been wrong, a new one)
                retrying(trial.set_user_attr, "error", "not needed: the search met its budget")
                retrying(handle.tell, trial, state=TrialState.FAIL, skip_if_finished=True)
                continue
            live = self._start(trial, handle)
            if live is not None:
                return live
        return None

    def settle(self) -> bool:
        """Do what needs no training (plan the phases, serve trials from the cache) until a
        trial must train, which the first :meth:`suggest` then hands to Tune; whether the
        job's work is all done.

        For a resumed or cached job, before anything starts Ray.
        """
        while not (self.stop.is_set() or self.exhausted):
            live = self._next()
            if live is not None:
                self.ready.append(live)
                return False
            if not self._ended_phase():
                return False
            if self.finished:
                return True
        return False

    def _asked(self) -> tuple[_Live, ...]:
        """The trials asked and not yet told."""
        return (*self.live.values(), *self.pending, *self.ready)

    def _ended_phase(self) -> bool:
        """Move on from the current phase if nothing of it is left to ask or waited for;
        whether it moved."""
        phase = self.phases[self._at]
        if self._asked():
            return False
        if phase == "search" and self.evaluated < self.config.trials:
            return False
        if phase != "search" and self.waiting > 0:
            return False
        if phase != "search":
            log.info(
                "job %s: %s phase ended: %s complete, %s failed",
                self.job_id,
                phase,
                self.done[phase],
                self.failures[phase],
            )
        self._at += 1
        if not self.finished:
            self._begin(self.phases[self._at])
        return True

    def _begin(self, phase: Phase) -> None:
        job = retrying(self.store.get_job, self.job_id)
        planned = (job.plan or {}).get(phase)
        total = int(planned["total"]) if planned else retrying(self._plan, phase)
        self.totals[phase] = total
        self.waiting = len(
            retrying(self.study.get_trials, deepcopy=False, states=(TrialState.WAITING,))
        )
        log.info("job %s: %s phase: %s planned", self.job_id, phase, _trainings(total))
        self._progress(phase)

    def _plan(self, phase: Phase) -> int:
        """Enqueue the phase's trials the job does not hold yet; record and return its total.

        Idempotent: a crash part-way leaves trials that the next plan finds held.
        """
        trials = self.study.get_trials(deepcopy=False)
        held = {
            _training(t)
            for t in trials
            if "arch_hash" in t.user_attrs
            and (
                t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
                or (t.state == TrialState.FAIL and trial_phase(t) != "search")
            )
        }
        details: dict[str, Any] = {}
        if phase == "confirm":
            front = self._front(before="confirm")
            plan = confirm_plan(
                [ArchSpec.from_row(r) for r in front.to_dict("records")], seeds=self.config.seeds
            )
        else:
            references, reason = self._references()
            plan, skipped = ablate_plan(
                references,
                space=self.config.space,
                input_shape=self.input_shape,
                ablate=self.config.ablate,
                seeds=self.config.seeds,
            )
            details["references"] = [trial for trial, _ in references]
            details["skipped"] = [s.to_dict() for s in skipped]
            if reason is not None:
                details["reason"] = reason
                log.warning("job %s: ablate phase: %s", self.job_id, reason)
        names = self.config.space.distributions()
        for planned in plan:
            training = (planned.arch.hash(), planned.replicate)
            if training in held:
                continue
            if not self.config.space.contains(planned.arch):
                # Optuna would leave the trial RUNNING for ever on a value its distribution lacks
                raise ValueError(
                    f"planned architecture {planned.arch.canonical_json()} is not in the space"
                )
            attrs: dict[str, Any] = {
                "phase": planned.phase,
                "replicate": planned.replicate,
                "seed": replicate_seed(self.config.seed, planned.replicate),
                "arch_hash": planned.arch.hash(),
            }
            if planned.reference is not None:
                attrs["reference"] = planned.reference
            params = {k: v for k, v in planned.arch.params().items() if k in names}
            self.plain.enqueue_trial(params, user_attrs=attrs)
            held.add(training)
        total = len(
            {_training(t) for t in self.study.get_trials(deepcopy=False) if trial_phase(t) == phase}
        )
        self.store.record_plan(self.job_id, phase, {"total": total, **details})
        return total

    def _front(self, *, before: Phase) -> pd.DataFrame:
        """The front of per-architecture means of the phases before ``before``: what a plan
        made after a crash sees too, whatever of that phase already ran."""
        earlier = [f"phase!={p}" for p in self.phases[self.phases.index(before) :]]
        done = load_candidates(self.store, self.job_id, where=["state=complete", *earlier])
        objectives = list(self.config.objectives)
        return pareto_front(architecture_means(done, objectives), objectives)

    def _references(self) -> tuple[list[tuple[int, ArchSpec]], str | None]:
        """The ablation's references, or none and why."""
        if self.config.reference is None:
            front = self._front(before="ablate")
            return pick_references(front, count=self.config.references), None
        number = self.config.reference
        for row in self.store.list_candidates(self.job_id, state="complete"):
            if row.trial_number == number:
                return [(number, ArchSpec.from_json(row.arch_json))], None
        return [], f"reference trial {number} is not a complete trial of job {self.job_id}"

    def _unblocked(self) -> _Live | None:
        """A waiting trial whose key no trial trains any more: served from the cache (then
        the next is looked at), or returned to train (the other one failed)."""
        for live in list(self.pending):
            if any(other.key == live.key for other in self.live.values()):
                continue
            self.pending.remove(live)
            hit = self._cached(live)
            if hit is None:
                return live
            self._serve(live, hit)
        return None

    def _cached(self, live: _Live) -> CachedResult | None:
        """The cache's result for ``live``'s key, unless it lacks ``latency_rel`` (recorded
        before candidates had one) and the job optimises it; else, for a search trial, the
        same training stopped early in this job (a repeat would meet the same rungs)."""
        hit = retrying(self.store.find_cached, live.key)
        if hit is not None and hit.latency_rel is None and "latency_rel" in self.config.objectives:
            hit = None
        if hit is None and live.phase == "search" and self.config.early_stop != "none":
            hit = retrying(self.store.find_stopped, live.key, job_id=self.job_id)
        return hit

    def _start(self, trial: optuna.Trial, handle: optuna.Study) -> _Live | None:
        """Prepare an asked trial: ``None`` when it needs no Tune trial now (rejected, served
        from the cache, or waiting for a trial of the same key)."""
        try:
            live = retrying(self._prepare, trial, handle)
        except ValueError as exc:
            # refused before training: FAIL with the reason, no budget used, ask again
            retrying(trial.set_user_attr, "error", f"rejected: {exc}")
            retrying(handle.tell, trial, state=TrialState.FAIL, skip_if_finished=True)
            self._failed(trial_phase(trial), str(exc))
            return None
        if not self.config.cache:
            return live
        if any(other.key == live.key for other in self.live.values()):
            self.pending.append(live)
            return None
        hit = self._cached(live)
        if hit is None:
            return live
        self._serve(live, hit)
        return None

    def _ask(self, handle: optuna.Study) -> optuna.Trial:
        try:
            return handle.ask()
        except db_errors() as exc:
            # ask may have created the trial and lost the connection while sampling it
            OUTAGE.down(exc)
            return retrying(self._adopt_or_ask, handle)

    def _adopt_or_ask(self, handle: optuna.Study) -> optuna.Trial:
        # One worker runs a job, and recover() failed the RUNNING trials of earlier attempts,
        # so a RUNNING trial that no live candidate holds is one this searcher began.
        held = {live.trial.number for live in self._asked()}
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in held:
                return self.job.resume(frozen.number)
        return handle.ask()

    def _prepare(self, trial: optuna.Trial, handle: optuna.Study) -> _Live:
        # Every step is idempotent (a parameter already suggested is read back), so a dropped
        # connection can retry the whole of it.
        attrs = trial.user_attrs
        phase = trial_phase(trial)
        if handle is self.study:
            self.job.assign_generation(trial)
        arch = self.config.space.sample(trial)
        arch.check_fits(self.input_shape)
        cost = arch_cost(arch, input_shape=self.input_shape, num_classes=self.num_classes)
        replicate = int(attrs.get("replicate", 0))
        # a re-run keeps its original's seed; a trial never seeded gets its replicate's
        kept = attrs.get("seed")
        seed = int(kept) if kept is not None else replicate_seed(self.config.seed, replicate)
        key = self.cache_key(arch, seed)
        share = self.gpu_share(arch)
        oom_rerun = attrs.get(OOM_RETRY_OF) is not None
        if oom_rerun and share > 0:
            share = max(share, float(attrs["gpu_share"]))
        _set_attrs(
            trial,
            {
                "phase": phase,
                "replicate": replicate,
                "seed": seed,
                "arch_hash": arch.hash(),
                "cache_key": key,
                **({"gpu_share": share} if share > 0 else {}),
            },
        )
        reference = attrs.get("reference")
        return _Live(
            trial,
            handle,
            arch,
            cost,
            phase,
            replicate,
            None if reference is None else int(reference),
            seed,
            key,
            known_costs(self.config.objectives, cost._asdict()),
            self.config.train.epochs,
            share,
            oom_rerun,
        )

    def _serve(self, live: _Live, hit: CachedResult) -> None:
        """Complete ``live`` with the result of candidate ``hit``: its row first (running,
        with the source's curve), then Optuna, then the row's end, so that a crash between
        the writes leaves what :meth:`search.study.JobStudy.recover` repairs."""
        candidate_id = retrying(
            self.recorder.start_cached,
            number=live.trial.number,
            arch=live.arch,
            cost=live.cost,
            seed=live.seed,
            phase=live.phase,
            replicate=live.replicate,
            reference=live.reference,
            cache_key=live.key,
            source=hit,
        )
        if hit.stopped_at is not None:
            # the same training, stopped early: pruned again, in the budget, without training
            self._prune(
                live, Stopped(hit.stopped_at, float(hit.val_acc)), cached_from=hit.candidate_id
            )
        else:
            metrics = {
                "val_acc": hit.val_acc,
                "test_acc": hit.test_acc,
                "latency_ms": hit.latency_ms,
                "latency_rel": hit.latency_rel,
                "train_s": hit.train_s,
                "device": hit.device,
                "epochs_done": hit.epochs_done,
                "cached_from": hit.candidate_id,
            }
            self._tell_complete(live, metrics)
        retrying(
            self.recorder.end_cached,
            candidate_id=candidate_id,
            number=live.trial.number,
            source=hit,
        )
        self._progress(live.phase)

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
        stopped = self.stopped.pop(trial_id, None)
        if live is None:
            return
        if result:
            self.on_trial_result(trial_id, result)
        last = live.last
        if error or last.get("error"):
            message = str(last.get("error") or "the trial process died")
            if not (last.get("oom") and self._rerun_bigger(live, message)):
                self._fail(live, message)
        elif stopped is not None:
            self._prune(live, stopped)
        elif not last.get("final"):
            self._interrupted(live)
        else:
            attrs = {key: last.get(key) for key in _RESULT_ATTRS}
            attrs["ray_resources"] = json.loads(last.get("ray_resources", "{}"))
            if last.get("device_type"):
                # the key of what ran: a trial that found no CUDA trained on the CPU
                attrs["cache_key"] = self.cache_key(live.arch, live.seed, last["device_type"])
            self._tell_complete(live, attrs)
        self._progress(live.phase)

    def _tell_complete(self, live: _Live, metrics: dict[str, Any]) -> None:
        """Tell Optuna ``live`` is COMPLETE with ``metrics``, or FAIL if an objective is
        missing or not finite."""
        cost = live.cost._asdict()
        try:
            values = [
                float(cost[name] if name in cost else metrics[name])
                for name in self.config.objectives
            ]
        except (KeyError, TypeError, ValueError) as exc:
            self._fail(live, f"objective missing from the result: {exc}")
            return
        if not all(math.isfinite(v) for v in values):
            self._fail(live, f"non-finite objective values {values}")
            return
        retrying(_set_attrs, live.trial, metrics)
        retrying(live.handle.tell, live.trial, values, skip_if_finished=True)
        self.done[live.phase] += 1

    def _prune(self, live: _Live, stopped: Stopped, *, cached_from: int | None = None) -> None:
        """Tell Optuna PRUNED what early stopping stopped (or, ``cached_from``, the repeat of a
        training it stopped): evaluated, never on a front."""
        attrs: dict[str, Any] = {
            STOPPED_AT: stopped.epoch,
            "val_acc": stopped.val_acc,
            "epochs_done": stopped.epoch,
        }
        if cached_from is not None:
            attrs["cached_from"] = cached_from
        retrying(_set_attrs, live.trial, attrs)
        retrying(live.handle.tell, live.trial, state=TrialState.PRUNED, skip_if_finished=True)
        self.pruned += 1

    def _rerun_bigger(self, live: _Live, message: str) -> bool:
        """Fail ``live``, which ran out of GPU memory, and enqueue its training again with the
        next share class; whether it did (not for a re-run, nor from a whole GPU)."""
        bigger = next_share(live.share) if live.share > 0 else None
        if bigger is None or live.oom_rerun:
            return False
        retrying(
            self.job.requeue,
            live.trial.number,
            reason=f"out of GPU memory at share {live.share:g}, run again at {bigger:g}: {message}",
            marker=OOM_RETRY_OF,
            extra={"gpu_share": bigger},
        )
        if live.phase != "search":
            self.waiting += 1  # the search's sampler handle takes it up by itself
        return True

    def _fail(self, live: _Live, message: str) -> None:
        retrying(live.trial.set_user_attr, "error", message)
        retrying(live.handle.tell, live.trial, state=TrialState.FAIL, skip_if_finished=True)
        self._failed(live.phase, message)

    def _failed(self, phase: Phase, message: str) -> None:
        self.failures[phase] += 1
        self.last_error = message

    def _interrupted(self, live: _Live) -> None:
        if self.stop.reason == "cancel":
            # the user stopped the job: keep what the trial learnt, as PRUNED
            attrs: dict[str, Any] = {"epochs_done": live.epochs_seen}
            if live.last.get("val_acc") is not None:
                attrs["val_acc"] = live.last["val_acc"]
            retrying(_set_attrs, live.trial, attrs)
            retrying(live.handle.tell, live.trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            # the worker is going away: the trial runs again, same training, elsewhere
            retrying(
                self.job.requeue, live.trial.number, reason="worker stopped while the trial ran"
            )

    def abandon_live(self) -> None:
        """Tell Optuna about the trials Tune stopped without reporting them back, and about
        those that never reached Tune."""
        for trial_id in list(self.live):
            self._interrupted(self.live.pop(trial_id))
        for waiting in (self.pending, self.ready):
            while waiting:
                self._interrupted(waiting.pop())

    def _progress(self, phase: Phase) -> None:
        if self.on_progress:
            done = self.evaluated if phase == "search" else self.done[phase]
            self.on_progress(phase, done, self.totals[phase], self.failures[phase])


def _training(trial: FrozenTrial) -> tuple[str, int]:
    """What a trial trains: its architecture's hash and its replicate."""
    return str(trial.user_attrs.get("arch_hash")), int(trial.user_attrs.get("replicate", 0))


def _trainings(n: int) -> str:
    return f"{n} training{'s' * (n != 1)}"


def _set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    # each attribute is a transaction of its own: one the trial holds already (a planned or
    # re-run trial's phase, replicate, seed) is not written again
    held = trial.user_attrs
    for key, value in attrs.items():
        if key not in held or type(held[key]) is not type(value) or held[key] != value:
            trial.set_user_attr(key, value)
