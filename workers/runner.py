"""One job = one Ray Tune run, with an Optuna study in the poolstride database as the searcher.

Why a searcher of our own instead of Ray's ``OptunaSearch``: that searcher tells Optuna
COMPLETE with partial values when a trial is stopped, leaves a trial RUNNING forever when
``tell`` raises, re-enqueues its start points on every resume and replays the sampler's random
draws after a restart. :class:`StudySearcher` drives the study by ask/tell itself:

- a trial that raises or yields a non-finite objective is FAIL with its error, and the job goes on;
- a trial stopped before its last epoch is PRUNED (partial metrics in user attributes and in
  poolstride's tables), never COMPLETE;
- an architecture the space rejects is told FAIL before any training and uses no budget;
- the budget counts COMPLETE trials only, so the job ends with exactly ``trials`` of them;
- trials left RUNNING by a dead worker are failed and enqueued again with the same architecture,
  and the sampler is seeded afresh on each attempt so it does not replay earlier draws.

Candidate rows and learning curves are written by the driver (this process), so a trial process
needs no database connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from search.config import JobConfig
from search.cost import Cost, arch_cost
from search.objectives import direction
from search.space import ArchSpec, max_stages
from search.store import Store, db_errors, list_candidates, retrying
from search.study import make_sampler

__all__ = [
    "JobOutcome",
    "StopRequest",
    "StudySearcher",
    "ray_session",
    "run_job",
]

log = logging.getLogger(__name__)
# Tune's result files are off (results live in the database), so its end-of-run analysis
# complains about every trial; nothing is missing.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)

# Ray reads these when it starts; set them before any ray import takes effect.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# the worker's own SIGINT/SIGTERM handler hands the job back; Tune's would replace it mid-run
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from workers.data import Dataset, load_dataset  # noqa: E402
from workers.train import TrainConfig, TrainResult, train  # noqa: E402

TrainFn = Callable[..., TrainResult]

RETRY_OF = "retry_of"
T = TypeVar("T")
_LOST = "worker lost while the trial ran"


class StopRequest:
    """Asks a running job to stop; ``reason`` is ``"cancel"`` or ``"shutdown"``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True)
class JobOutcome:
    """How a run ended: ``succeeded``, ``failed``, ``cancelled`` or ``interrupted``."""

    status: str
    completed: int
    failed: int
    error: str | None = None


@dataclass
class _Live:
    trial: optuna.trial.Trial
    candidate_id: int
    arch: ArchSpec
    epochs_seen: int = 0
    last: dict[str, Any] = field(default_factory=dict)


def _objective_values(
    objectives: tuple[str, ...], result: dict[str, Any], cost: dict[str, int]
) -> list[float]:
    return [float(cost[name] if name in cost else result[name]) for name in objectives]


class StudySearcher(Searcher):
    """A Tune searcher that asks and tells an Optuna study and records candidates.

    Args:
        study: The job's study (its storage is the poolstride database).
        config: The job config (space, budget, objectives, training knobs).
        store: Where candidate rows and curves go.
        job_id: The job the candidates belong to.
        attempt: The job's attempt number (recorded on each candidate).
        worker_id: The worker running the job.
        num_classes: Classes of the loaded dataset.
        input_shape: ``(C, H, W)`` of the loaded dataset.
        stop: Set when the job must stop; trials then in flight are failed and re-enqueued
            (shutdown) or pruned (cancel).
        weights_dir: Where to file each complete candidate's weights (``trial-<n>.pt``);
            ``None`` keeps none.
        on_progress: Called with ``(completed, failed)`` after every finished trial.
    """

    def __init__(
        self,
        *,
        study: optuna.Study,
        config: JobConfig,
        store: Store,
        job_id: int,
        attempt: int,
        worker_id: str,
        num_classes: int,
        input_shape: tuple[int, int, int],
        stop: StopRequest,
        weights_dir: Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__()
        self.study, self.config, self.store = study, config, store
        self.job_id, self.attempt, self.worker_id = job_id, attempt, worker_id
        self.num_classes, self.input_shape = num_classes, input_shape
        self.stop, self.on_progress = stop, on_progress
        self.weights_dir = weights_dir
        self.live: dict[str, _Live] = {}
        self.completed = sum(
            t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)
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
            candidate_id = retrying(
                self.store.start_candidate,
                job_id=self.job_id,
                trial_number=trial.number,
                optuna_trial_id=trial._trial_id,
                arch=arch,
                cost=cost,
                seed=seed,
                attempt=self.attempt,
                worker_id=self.worker_id,
                epochs_total=self.config.epochs,
            )
            self.live[trial_id] = _Live(trial, candidate_id, arch)
            return {
                "arch": arch.to_dict(),
                "seed": seed,
                "trial_number": trial.number,
                "keep_weights": self.weights_dir is not None,
            }
        return Searcher.FINISHED

    def _ask(self) -> optuna.Trial:
        try:
            return self.study.ask()
        except db_errors() as exc:
            # ask may have created the trial and lost the connection while sampling it
            log.warning("database unreachable while asking (%s)", str(exc).splitlines()[0])
            return retrying(self._adopt_or_ask)

    def _adopt_or_ask(self) -> optuna.Trial:
        # One worker runs a job, and recover() failed the RUNNING trials of earlier attempts,
        # so a RUNNING trial that no live candidate holds is one this searcher began.
        held = {live.trial.number for live in self.live.values()}
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in held:
                return optuna.Trial(self.study, frozen._trial_id)
        return self.study.ask()

    def _prepare(self, trial: optuna.Trial) -> tuple[ArchSpec, Cost, int]:
        # Every step is idempotent (a parameter already suggested is read back), so a dropped
        # connection can retry the whole of it.
        _assign_generation(self.study, trial)
        arch = self.config.space.sample(trial)
        arch.check_fits(self.input_shape)
        cost = arch_cost(arch, input_shape=self.input_shape, num_classes=self.num_classes)
        seed = int(trial.user_attrs.get("seed", self.config.seed * 1_000_003 + trial.number))
        _set_attrs(trial, {"seed": seed, "arch_hash": arch.hash()})
        return arch, cost, seed

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        live = self.live.get(trial_id)
        if live is None:
            return
        live.last = dict(result)
        if "epoch" in result and result["epoch"] > live.epochs_seen:
            live.epochs_seen = int(result["epoch"])
            retrying(
                self.store.record_epoch,
                candidate_id=live.candidate_id,
                epoch=live.epochs_seen,
                val_acc=float(result["val_acc"]),
                train_loss=float(result["train_loss"]),
                seconds=float(result["epoch_s"]),
            )

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
        cost = arch_cost(
            live.arch, input_shape=self.input_shape, num_classes=self.num_classes
        )._asdict()
        try:
            values = _objective_values(self.config.objectives, last, cost)
        except (KeyError, TypeError, ValueError) as exc:
            self._fail(live, f"objective missing from the result: {exc}")
            return
        if not all(math.isfinite(v) for v in values):
            self._fail(live, f"non-finite objective values {values}")
            return
        attrs = {
            key: last.get(key)
            for key in (
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
        }
        attrs["ray_resources"] = json.loads(last.get("ray_resources", "{}"))
        retrying(_set_attrs, live.trial, attrs)
        weights = last.get("weights")
        if self.weights_dir is not None and weights:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            path = self.weights_dir / f"trial-{live.trial.number}.pt"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(weights)
            tmp.replace(path)  # a reader never sees half a file
        retrying(self.study.tell, live.trial, values, skip_if_finished=True)
        retrying(
            self.store.finish_candidate,
            candidate_id=live.candidate_id,
            state="complete",
            val_acc=last["val_acc"],
            test_acc=last.get("test_acc"),
            latency_ms=last.get("latency_ms"),
            train_s=last.get("train_s"),
            device=last.get("device"),
            epochs_done=int(last.get("epochs_done", live.epochs_seen)),
        )
        self.completed += 1

    def _fail(self, live: _Live, message: str) -> None:
        retrying(live.trial.set_user_attr, "error", message)
        retrying(self.study.tell, live.trial, state=TrialState.FAIL, skip_if_finished=True)
        retrying(
            self.store.finish_candidate,
            candidate_id=live.candidate_id,
            state="failed",
            epochs_done=live.epochs_seen,
            error=message,
        )
        self.failed += 1
        self.last_error = message

    def _interrupted(self, live: _Live) -> None:
        if self.stop.reason == "cancel":
            # the user stopped the job: keep what the trial learnt, as PRUNED
            partial = live.last.get("val_acc")
            attrs = {"epochs_done": live.epochs_seen}
            if partial is not None:
                attrs["val_acc"] = partial
            retrying(_set_attrs, live.trial, attrs)
            retrying(self.study.tell, live.trial, state=TrialState.PRUNED, skip_if_finished=True)
            retrying(
                self.store.finish_candidate,
                candidate_id=live.candidate_id,
                state="pruned",
                val_acc=partial,
                epochs_done=live.epochs_seen,
                error="job cancelled",
            )
        else:
            # the worker is going away: the trial runs again, same architecture, elsewhere
            retrying(
                requeue, self.study, live.trial.number, reason="worker stopped while the trial ran"
            )
            retrying(
                self.store.finish_candidate,
                candidate_id=live.candidate_id,
                state="failed",
                epochs_done=live.epochs_seen,
                error="worker stopped while the trial ran",
            )

    def abandon_live(self) -> None:
        """Handle trials Tune never reported back (it stopped without telling)."""
        for trial_id in list(self.live):
            self._interrupted(self.live.pop(trial_id))


def _assign_generation(study: optuna.Study, trial: optuna.trial.Trial) -> None:
    # An enqueued trial has all its params fixed and never reaches NSGA-II's sampling, so it gets
    # no generation and its result would be ignored by the populations; give it one.
    sampler = study.sampler
    if isinstance(sampler, optuna.samplers.NSGAIISampler):
        frozen = study._storage.get_trial(trial._trial_id)
        sampler.get_trial_generation(study, frozen)


def _set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def requeue(study: optuna.Study, number: int, *, reason: str) -> None:
    """Fail trial ``number`` with ``reason`` if still RUNNING and enqueue its architecture again.

    Reads the trial afresh, so a retry after a dropped connection neither fails it twice nor
    enqueues it twice.
    """
    trials = study.get_trials(deepcopy=False)
    trial = trials[number]
    if trial.state == TrialState.RUNNING:
        study._storage.set_trial_user_attr(trial._trial_id, "error", reason)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    if all(t.user_attrs.get(RETRY_OF) != number for t in trials):
        study.enqueue_trial(
            trial.params, user_attrs={RETRY_OF: number, "seed": trial.user_attrs.get("seed")}
        )


def recover(study: optuna.Study, store: Store, job_id: int) -> int:
    """Repair what a dead worker left behind; returns how many trials it re-enqueued.

    Trials left RUNNING are failed and enqueued again. A candidate row still ``running`` whose
    trial Optuna already holds as COMPLETE (the worker died between the two writes) is
    completed from the trial's attributes, so the two views agree; the rest are failed.
    """
    trials = study.get_trials(deepcopy=False)
    stale = [t for t in trials if t.state == TrialState.RUNNING]
    for trial in stale:
        requeue(study, trial.number, reason=_LOST)
    for row in list_candidates(store, job_id, state="running"):
        trial = trials[row.trial_number]
        if trial.state == TrialState.COMPLETE:
            attrs = trial.user_attrs
            store.finish_candidate(
                candidate_id=row.id,
                state="complete",
                val_acc=attrs["val_acc"],
                test_acc=attrs.get("test_acc"),
                latency_ms=attrs.get("latency_ms"),
                train_s=attrs.get("train_s"),
                device=attrs.get("device"),
                epochs_done=attrs.get("epochs_done", row.epochs_total),
            )
    store.fail_running_candidates(job_id=job_id, error=_LOST)
    return len(stale)


def _trainable(config: dict[str, Any], dataset: Dataset, train_fn: TrainFn) -> None:
    """One candidate, inside a Tune trial: reports once per epoch, then the final metrics."""
    arch = ArchSpec.from_dict(config["arch"])
    hp = TrainConfig(**{**config["train"], "seed": config["seed"]})
    start = time.perf_counter()
    try:

        def on_epoch(epoch: int, val_acc: float, train_loss: float, seconds: float) -> bool:
            tune.report(
                {"epoch": epoch, "val_acc": val_acc, "train_loss": train_loss, "epoch_s": seconds}
            )
            return False

        result = train_fn(arch, dataset, hp, on_epoch=on_epoch, keep_weights=config["keep_weights"])
    except Exception as exc:  # reported, so the searcher can tell Optuna FAIL with the reason
        tune.report({"error": f"{type(exc).__name__}: {exc}"})
        return
    ctx = ray.get_runtime_context()
    tune.report(
        {
            "final": True,
            "val_acc": result.val_acc,
            "test_acc": result.test_acc,
            "latency_ms": result.latency_ms,
            "train_s": result.train_s,
            "device": result.device,
            "epochs_done": result.epochs_done,
            # the candidate's whole work (training, evaluation, latency), for overhead figures
            "trial_s": time.perf_counter() - start,
            # JSON, because Tune flattens nested results
            "ray_resources": json.dumps(ctx.get_assigned_resources(), sort_keys=True),
            "ray_node": ctx.get_node_id(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            # bytes back to the driver, which files them: nodes need no shared disk
            "weights": result.weights,
        }
    )


class _StopAll(tune.Stopper):
    def __init__(self, stop: StopRequest | None) -> None:
        self._stop = stop

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def __getstate__(self) -> dict[str, Any]:
        return {"_stop": None}  # a lock does not pickle; see StudySearcher.__getstate__


@contextlib.contextmanager
def ray_session(
    *, address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None
) -> Iterator[None]:
    """Use the running Ray instance, or start a private one (own temp folder) for the block."""
    if ray.is_initialized():
        yield
        return
    temp_dir = tempfile.mkdtemp(prefix="ps-ray-", dir="/tmp")  # short: socket paths are capped
    os.environ["RAY_TMPDIR"] = temp_dir
    if not address:
        # a private instance listens on this machine only; don't write a shared token to ~/.ray
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    # if this process dies without ray.shutdown(), the reaper kills what Ray left running
    reaper = subprocess.Popen(
        [sys.executable, "-m", "workers._reaper", temp_dir],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, _temp_dir=temp_dir, **kwargs)
        yield
    finally:
        ray.shutdown()
        reaper.terminate()
        reaper.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def run_job(
    *,
    store: Store,
    job_id: int,
    config: JobConfig,
    study_name: str,
    attempt: int,
    worker_id: str,
    storage: optuna.storages.BaseStorage,
    stop: StopRequest | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    dataset: Dataset | None = None,
    train_fn: TrainFn = train,
    weights_dir: Path | None = None,
) -> JobOutcome:
    """Run one job to its end on the current Ray instance (see :func:`ray_session`).

    ``dataset`` (else loaded from the config) and ``train_fn`` (else :func:`workers.train.train`)
    can be injected. Weights are filed in ``weights_dir`` as the job's ``keep_weights`` says
    (``front``: only the final Pareto front's survive a successful run). Returns the outcome;
    the caller (the worker daemon) writes it to the job row.
    """
    stop = stop or StopRequest()
    if dataset is None:
        try:
            dataset = load_dataset(
                config.dataset,
                data_dir=config.data_dir,
                input_shape=config.space.input_shape,
                seed=config.seed,
            )
        except ValueError as exc:  # missing or unreadable data: another attempt won't help
            return JobOutcome("failed", 0, 0, f"dataset {config.dataset}: {exc}")
    if len(config.space.stages) > max_stages(dataset.input_shape):
        # the space was checked at submit against the declared shape; files may disagree
        return JobOutcome(
            "failed",
            0,
            0,
            f"the dataset's input {dataset.input_shape} allows "
            f"{max_stages(dataset.input_shape)} stages, the space has "
            f"{len(config.space.stages)}",
        )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        directions=[direction(o) for o in config.objectives],
        sampler=make_sampler(
            config.sampler,
            seed=_attempt_seed(config.seed, storage, study_name),
            space_grid=config.space.distributions(),
        ),
    )
    recover(study, store, job_id)
    searcher = StudySearcher(
        study=study,
        config=config,
        store=store,
        job_id=job_id,
        attempt=attempt,
        worker_id=worker_id,
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        stop=stop,
        on_progress=on_progress,
        weights_dir=weights_dir if config.keep_weights != "none" else None,
    )
    if searcher.completed >= config.trials:
        return JobOutcome("succeeded", searcher.completed, 0)
    hp = {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "label_smoothing": config.label_smoothing,
        "augment": config.augment,
    }
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, dataset=dataset, train_fn=train_fn),
        {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
    )
    tune_dir = tempfile.mkdtemp(prefix="ps-tune-")
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"train": hp},
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=-1,
                max_concurrent_trials=config.concurrency,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"job-{job_id}",
                storage_path=tune_dir,
                verbose=0,
                stop=_StopAll(stop),
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        tuner.fit()
    finally:
        shutil.rmtree(tune_dir, ignore_errors=True)
    searcher.abandon_live()
    if stop.reason == "cancel":
        return JobOutcome("cancelled", searcher.completed, searcher.failed)
    if stop.reason is not None:
        return JobOutcome("interrupted", searcher.completed, searcher.failed, stop.reason)
    if searcher.completed >= config.trials:
        if weights_dir is not None and config.keep_weights == "front":
            _keep_front_weights(study, weights_dir)
        return JobOutcome("succeeded", searcher.completed, searcher.failed)
    return JobOutcome(
        "failed",
        searcher.completed,
        searcher.failed,
        f"{searcher.failed} trials failed; last error: {searcher.last_error}",
    )


def _keep_front_weights(study: optuna.Study, weights_dir: Path) -> None:
    front = {f"trial-{t.number}.pt" for t in study.best_trials}
    for path in weights_dir.glob("trial-*.pt"):
        if path.name not in front:
            path.unlink()


def _attempt_seed(seed: int, storage: optuna.storages.BaseStorage, study_name: str) -> int:
    """A sampler seed that differs on every resume, so a restart does not replay old draws."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
        n = len(storage.get_all_trials(study_id, deepcopy=False))
    except KeyError:
        n = 0
    return (seed * 1_000_003 + n * 7919) % (2**32)
