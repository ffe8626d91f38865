"""A job's Optuna study: the sampler registry, creating or loading the study, and recovery.

Optuna only: no Ray, no torch. The store is passed in where candidate rows must follow the study.

Optuna's :class:`~optuna.study.Study` exposes neither a trial's storage id nor a way to write an
attribute of a trial it did not hand out. Both are public on the storage
(:class:`~optuna.storages.BaseStorage`), so :class:`JobStudy` keeps the storage the study was
opened on beside it and goes through that, never through ``study._storage`` or
``trial._trial_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from search.objectives import direction
from search.vocabulary import PHASES, Phase

if TYPE_CHECKING:
    from search.config import JobConfig
    from search.store import Store

__all__ = [
    "KEPT_ON_RETRY",
    "LOST",
    "OOM_RETRY_OF",
    "REDRAWS",
    "RETRY_OF",
    "SAMPLERS",
    "SAMPLER_HELP",
    "STOPPED_AT",
    "DistinctTPESampler",
    "JobStudy",
    "SamplerFactory",
    "end_open_trials",
    "make_sampler",
    "nsga2_population",
    "open_study",
    "record_trial_end",
    "tpe_startup",
    "trial_phase",
]


class SamplerFactory(Protocol):
    """Builds a sampler from the attempt's seed, the space's choices and the search budget."""

    def __call__(
        self, *, seed: int, grid: dict[str, list[Any]], trials: int
    ) -> optuna.samplers.BaseSampler: ...


def nsga2_population(trials: int) -> int:
    """NSGA-II's population for a search of ``trials`` candidates: half the budget (at least
    4, at most Optuna's 50), so that a small search breeds a second generation instead of
    drawing one random population.

    Example:
        >>> nsga2_population(16), nsga2_population(6), nsga2_population(1000)
        (8, 4, 50)
    """
    return max(_MIN_POPULATION, min(_MAX_POPULATION, trials // 2))


def tpe_startup(trials: int) -> int:
    """TPE's random start for a search of ``trials`` candidates: a quarter of the budget (at
    least 3, at most Optuna's 10); after it every proposal is fitted to the results so far.

    Example:
        >>> tpe_startup(16), tpe_startup(8), tpe_startup(1000)
        (4, 3, 10)
    """
    return max(_MIN_STARTUP, min(_MAX_STARTUP, trials // 4))


def _nsga2(*, seed: int, grid: dict[str, list[Any]], trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=nsga2_population(trials))


class DistinctTPESampler(optuna.samplers.TPESampler):
    """TPE that proposes no architecture the study already holds, where it can.

    Fitted to a few results, TPE proposes the best architecture so far again, which the
    result cache then serves for nothing but a used candidate. A proposal equal to another
    trial's parameters is drawn again, up to :data:`REDRAWS` times (then kept: the space may
    hold nothing else). Only the fitted proposals are checked: the random start repeats one
    only as often as random search does.

    Example:
        >>> sampler = DistinctTPESampler(seed=0, n_startup_trials=3, multivariate=True)
    """

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, Any]:
        params = super().sample_relative(study, trial, search_space)
        if not params:
            return params
        names = sorted(params)
        held = {
            tuple(t.params.get(n) for n in names)
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number
        }
        for _ in range(REDRAWS):
            if tuple(params[n] for n in names) not in held:
                break
            params = super().sample_relative(study, trial, search_space)
        return params


def _tpe(*, seed: int, grid: dict[str, list[Any]], trials: int) -> optuna.samplers.BaseSampler:
    # multivariate: the choices of a network act together; the constant liar counts the
    # trials still training as bad, so concurrent trials are not asked the same architecture
    return DistinctTPESampler(
        seed=seed, n_startup_trials=tpe_startup(trials), multivariate=True, constant_liar=True
    )


def _random(*, seed: int, grid: dict[str, list[Any]], trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _grid(*, seed: int, grid: dict[str, list[Any]], trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler(grid, seed=seed)


# name -> factory: the one list of sampler names that config validation, the CLI help and
# the runner read; SAMPLER_HELP says what each does at small budgets
SAMPLERS: dict[str, SamplerFactory] = {
    "nsga2": _nsga2,
    "tpe": _tpe,
    "random": _random,
    "grid": _grid,
}
SAMPLER_HELP: dict[str, str] = {
    "nsga2": "generations of half the budget (4 to 50), the first random "
    "(at 16 candidates no better than random)",
    "tpe": "random for a quarter of the budget (3 to 10), then fitted to the results so far, "
    "never an architecture twice where it can",
    "random": "independent draws",
    "grid": "the space's points in random order, none twice",
}
REDRAWS = 10  # draws of a fitted TPE proposal before a repeated architecture is kept
_MIN_POPULATION, _MAX_POPULATION = 4, 50
_MIN_STARTUP, _MAX_STARTUP = 3, 10

RETRY_OF = "retry_of"  # user attribute of a trial enqueued again: the number it re-runs
# the same, for a trial run again with a bigger GPU share after running out of GPU memory
OOM_RETRY_OF = "oom_retry_of"
# what a trial run again keeps of its original's user attributes: the same training, in the
# same phase (and an out-of-memory re-run its raised share, and that it is one)
KEPT_ON_RETRY = ("phase", "replicate", "reference", "seed", "arch_hash", OOM_RETRY_OF, "gpu_share")
LOST = "worker lost while the trial ran"
# user attribute of a search trial early stopping stopped (PRUNED): the epoch it stopped at
STOPPED_AT = "stopped_at"
# a poolstride trial ends PRUNED when early stopping stops it (user attribute ``stopped_at``)
# or when its job is cancelled
_CANCELLED = "job cancelled"


def make_sampler(
    name: str, *, seed: int, space_grid: dict[str, list[Any]], trials: int
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name`` (one of :data:`SAMPLERS`), sized for a search of
    ``trials`` candidates.

    Example:
        >>> type(make_sampler("nsga2", seed=0, space_grid={}, trials=16)).__name__
        'NSGAIISampler'
    """
    try:
        factory = SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown sampler {name!r} (expected one of {', '.join(SAMPLERS)})"
        ) from None
    return factory(seed=seed, grid=space_grid, trials=trials)


@dataclass(frozen=True)
class JobStudy:
    """A job's study, with the storage it was opened on (see the module's docstring).

    Build it with :func:`open_study`.
    """

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    study_id: int

    def trial_id(self, number: int) -> int:
        """The storage id of trial ``number`` (what poolstride's candidate rows join on)."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def frozen_trial(self, number: int) -> FrozenTrial:
        """Trial ``number`` as the database holds it now (one trial read, not the study's)."""
        return self.storage.get_trial(self.trial_id(number))

    def resume(self, number: int) -> optuna.Trial:
        """A handle on RUNNING trial ``number``, as :meth:`optuna.Study.ask` would have returned.

        For a trial that ``ask`` created before its connection dropped: Optuna has no public
        way to take a running trial up again, so this builds the handle as ``ask`` does.
        """
        return optuna.Trial(self.study, self.trial_id(number))

    def plain(self) -> optuna.Study:
        """Another handle on the study, with a plain random sampler, for the trials a job
        plans (``confirm``, ``ablate``): asked and told through it, they never reach the
        search's sampler (NSGA-II's generations, the grid's count of its points).

        Example:
            >>> job_study.plain().ask().number  # a planned trial, fixed params  # doctest: +SKIP
            12
        """
        return optuna.load_study(
            study_name=self.study.study_name,
            storage=self.storage,
            sampler=optuna.samplers.RandomSampler(),
        )

    def assign_generation(self, trial: optuna.Trial) -> None:
        """Give ``trial`` its NSGA-II generation now (other samplers need nothing).

        An enqueued trial has all its params fixed and never reaches NSGA-II's sampling, so it
        would get no generation and the populations would ignore its result.
        """
        sampler = self.study.sampler
        if isinstance(sampler, optuna.samplers.NSGAIISampler):
            sampler.get_trial_generation(self.study, self.frozen_trial(trial.number))

    def requeue(
        self,
        number: int,
        *,
        reason: str,
        marker: str = RETRY_OF,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Fail trial ``number`` with ``reason`` if still RUNNING; enqueue its architecture again.

        Reads the trial afresh, so a retry after a dropped connection neither fails it twice nor
        enqueues it twice. The new trial carries ``marker`` (``retry_of``, or
        :data:`OOM_RETRY_OF`) set to ``number``, what the old trial had of
        :data:`KEPT_ON_RETRY` (its phase, replicate, reference, seed and architecture's hash;
        a search trial killed before it was seeded has none) and ``extra``.
        """
        trials = self.study.get_trials(deepcopy=False)
        trial = trials[number]
        if trial.state == TrialState.RUNNING:
            self._fail(number, reason)
        if all(t.user_attrs.get(marker) != number for t in trials):
            attrs: dict[str, Any] = {
                key: trial.user_attrs[key]
                for key in KEPT_ON_RETRY
                if trial.user_attrs.get(key) is not None
            }
            attrs.update({**(extra or {}), marker: number})
            # an enqueued trial killed before it was sampled has its params only as fixed ones
            params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
            self.study.enqueue_trial(params, user_attrs=attrs)

    def _fail(self, number: int, reason: str) -> None:
        # A trial read as RUNNING may end meanwhile (a worker whose lease ran out while it still
        # worked tells it): then its own outcome stands.
        try:
            self.storage.set_trial_user_attr(self.trial_id(number), "error", reason)
        except UpdateFinishedTrialError:
            return
        self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)

    def recover(
        self,
        store: Store,
        job_id: int,
        *,
        reason: str = LOST,
        requeue: bool | Callable[[FrozenTrial], bool] = True,
    ) -> int:
        """Repair what an attempt left behind; returns how many RUNNING trials it ended.

        Trials left RUNNING are failed with ``reason`` and, with ``requeue`` (true, or true
        for that trial), enqueued again (:meth:`requeue`). A candidate row still ``running``
        whose trial Optuna already holds as finished (COMPLETE, PRUNED or FAIL: the worker died
        between the two writes) is ended from the trial (:func:`record_trial_end`), so the two
        views agree and it keeps its real outcome; the rest are failed with ``reason``. Every
        step is idempotent.

        Example:
            >>> job_study.recover(store, job_id=1)  # doctest: +SKIP
            2
        """
        trials = self.study.get_trials(deepcopy=False)
        stale = [t for t in trials if t.state == TrialState.RUNNING]
        for trial in stale:
            if requeue(trial) if callable(requeue) else requeue:
                self.requeue(trial.number, reason=reason)
            else:
                self._fail(trial.number, reason)
        for row in store.list_candidates(job_id, state="running"):
            trial = trials[row.trial_number]
            if trial.state.is_finished():
                # a complete trial trained every epoch; one that stopped early got as far as
                # the curve the row recorded
                done = row.epochs_total if trial.state == TrialState.COMPLETE else row.epochs_done
                record_trial_end(store, candidate_id=row.id, trial=trial, epochs_done=done)
        store.fail_running_candidates(job_id=job_id, error=reason)
        return len(stale)


def end_open_trials(
    *,
    storage: optuna.storages.BaseStorage,
    store: Store,
    job_id: int,
    study_name: str,
    reason: str,
    requeue: bool = False,
) -> int:
    """End what an attempt that crashed, or a job that ended, left open: nothing stays RUNNING.

    Every trial still RUNNING is told FAIL with ``reason`` (the real error, not a guess) and
    every ``running`` candidate row is ended as :meth:`JobStudy.recover` does; with
    ``requeue`` (the job will run again) the failed trials' architectures are enqueued again.
    A job whose study was never created has only its rows to end. Idempotent; returns how
    many trials it failed.

    Example:
        >>> end_open_trials(storage=storage, store=store, job_id=3,
        ...                 study_name="poolstride-job-3",
        ...                 reason="attempt 1/1: OSError: disk full")  # doctest: +SKIP
        1
    """
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        store.fail_running_candidates(job_id=job_id, error=reason)
        return 0
    # the sampler is never asked: a plain one spares building the job's
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    return JobStudy(study=study, storage=storage, study_id=study_id).recover(
        store, job_id, reason=reason, requeue=requeue
    )


def open_study(*, storage: optuna.storages.BaseStorage, name: str, config: JobConfig) -> JobStudy:
    """Create or load the job's study, with its directions and a sampler seeded for this attempt.

    The sampler's seed mixes the job's seed with the number of trials the study already holds,
    so a resumed job does not replay the draws of its earlier attempts.

    Example:
        >>> from search.config import JobConfig
        >>> config = JobConfig.from_mapping({"dataset": "digits", "trials": 2, "epochs": 1})
        >>> job = open_study(storage=optuna.storages.InMemoryStorage(), name="job-1",
        ...                  config=config)
        >>> [d.name for d in job.study.directions], type(job.study.sampler).__name__
        (['MAXIMIZE', 'MINIMIZE'], 'DistinctTPESampler')
    """
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        directions=[direction(o) for o in config.objectives],
        sampler=make_sampler(
            config.sampler,
            seed=_attempt_seed(config.seed, storage, name),
            space_grid=config.space.distributions(),
            trials=config.trials,
        ),
    )
    return JobStudy(study=study, storage=storage, study_id=storage.get_study_id_from_name(name))


def record_trial_end(
    store: Store, *, candidate_id: int, trial: FrozenTrial, epochs_done: int
) -> None:
    """End candidate ``candidate_id`` as Optuna holds ``trial``: COMPLETE, PRUNED or FAIL.

    The metrics come from the trial's user attributes, which the searcher writes before it tells
    Optuna; ``epochs_done`` stands in where the trial does not say. A trial still RUNNING or
    WAITING leaves the row alone (:meth:`JobStudy.recover` deals with it).

    Example:
        >>> record_trial_end(store, candidate_id=7, trial=study.trials[3],
        ...                  epochs_done=2)  # doctest: +SKIP
    """
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        store.finish_candidate(
            candidate_id=candidate_id,
            state="complete",
            val_acc=attrs["val_acc"],
            test_acc=attrs.get("test_acc"),
            latency_ms=attrs.get("latency_ms"),
            latency_rel=attrs.get("latency_rel"),
            train_s=attrs.get("train_s"),
            device=attrs.get("device"),
            epochs_done=attrs.get("epochs_done", epochs_done),
            cache_key=attrs.get("cache_key"),
        )
    elif trial.state == TrialState.PRUNED:
        stopped_at = attrs.get("stopped_at")
        store.finish_candidate(
            candidate_id=candidate_id,
            state="pruned",
            val_acc=attrs.get("val_acc"),
            epochs_done=attrs.get("epochs_done", epochs_done),
            # early stopping prunes with the epoch it stopped at; a cancel without one
            error=_CANCELLED if stopped_at is None else None,
            stopped_at=stopped_at,
        )
    elif trial.state == TrialState.FAIL:
        store.finish_candidate(
            candidate_id=candidate_id,
            state="failed",
            epochs_done=epochs_done,
            error=attrs.get("error"),
        )


def trial_phase(trial: FrozenTrial | optuna.Trial) -> Phase:
    """The phase of a trial: its ``phase`` user attribute; ``search`` for a trial that has
    none (asked by the search's sampler before it was prepared, or by an older worker).

    Example:
        >>> trial_phase(optuna.trial.create_trial(state=TrialState.WAITING,
        ...                                       user_attrs={"phase": "ablate"}))
        'ablate'
    """
    phase = trial.user_attrs.get("phase", "search")
    if phase not in PHASES:
        raise ValueError(f"trial {trial.number} has an unknown phase {phase!r}")
    return cast(Phase, phase)


def _attempt_seed(seed: int, storage: optuna.storages.BaseStorage, study_name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(study_name)
        n = len(storage.get_all_trials(study_id, deepcopy=False))
    except KeyError:
        n = 0
    return (seed * 1_000_003 + n * 7919) % (2**32)
