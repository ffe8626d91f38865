"""One job = one Ray Tune run, with the job's Optuna study (in the poolstride database) as the
searcher.

:func:`run_job` wires the parts together: the study (:func:`search.study.open_study`, repaired
after a dead worker by :meth:`~search.study.JobStudy.recover`), the searcher that asks and tells
it phase by phase and serves the result cache (:class:`workers.searcher.StudySearcher`), the
callback that writes poolstride's rows and weights after it (:class:`workers.recorder.Recorder`),
and the trainable that trains one candidate per trial and reports once per epoch. The
trainable gets the job's training settings resolved for the device type its trials run on
(:func:`search.cache.resolve_settings`), the very settings the cache keys hash. Ray itself is
:mod:`workers.ray_session`'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import ray
import torch
from optuna.trial import TrialState
from ray import tune

from search.cache import cache_key, device_type_for, resolve_settings, settings_hash
from search.config import JobConfig
from search.memory import estimate_memory, resident_dataset_bytes, share_class
from search.space import ArchSpec, max_stages
from search.store import Store, retrying
from search.study import STOPPED_AT, open_study, trial_phase
from search.training import TrainConfig
from workers.data import Dataset, load_job_data
from workers.ray_session import tune_settings
from workers.recorder import Recorder
from workers.scheduler import HalvingScheduler, rungs_from_store
from workers.searcher import ProgressFn, StopRequest, StudySearcher
from workers.train import TrainResult, train

__all__ = ["GPU_MEMORY_RESOURCE", "JobOutcome", "Outcome", "device_memory", "run_job"]

TrainFn = Callable[..., TrainResult]

log = logging.getLogger(__name__)

# the Ray custom resource by which a node declares the memory of each of its GPUs, in GiB:
# ray start ... --num-gpus 4 --resources '{"gpu_memory_gib": 80}'
GPU_MEMORY_RESOURCE = "gpu_memory_gib"


Outcome = Literal["succeeded", "failed", "cancelled", "interrupted", "requeued"]


@dataclass(frozen=True)
class JobOutcome:
    """How a run ended: ``succeeded``, ``failed``, ``cancelled`` or ``interrupted``; the
    worker reports a crashed attempt that goes back to the queue as ``requeued``.
    ``completed`` counts complete trials of every phase, ``failed`` the trials that failed in
    this run."""

    status: Outcome
    completed: int
    failed: int
    error: str | None = None


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
    on_progress: ProgressFn | None = None,
    dataset: Dataset | None = None,
    train_fn: TrainFn = train,
    weights_dir: Path | None = None,
    start_ray: Callable[[], None] | None = None,
) -> JobOutcome:
    """Run one job to its end on the current Ray instance (:func:`workers.ray_session.ray_session`),
    or the one ``start_ray`` starts.

    ``dataset`` (else loaded from the config) and ``train_fn`` (else :func:`workers.train.train`)
    can be injected. Weights are filed in ``weights_dir`` (the job's folder of the artifact
    layout, ``<artifacts>/job-<id>``) as the job's ``keep_weights`` says (``front``: only those
    of the final Pareto front's architectures survive a successful run). ``start_ray`` is
    called when there is training to do (a worker starts Ray only then). ``on_progress`` gets
    each phase's ``(phase, done, total, failed)``. The job succeeds when its search met the
    budget and every planned trial ended (a planned trial that failed is counted in
    ``failed``, not retried). With ``gpus_per_trial`` ``auto`` and no ``gpu_memory``,
    ``start_ray`` is called first of all, to read the GPU memory the nodes declare
    (:func:`device_memory`). Returns the outcome; the caller (the worker daemon) writes it to
    the job row.

    Example:
        >>> with ray_session():  # doctest: +SKIP
        ...     run_job(store=store, job_id=job.id, config=job.config,
        ...             study_name=job.study_name, attempt=1, worker_id="w1",
        ...             storage=optuna_storage(url)).status
        'succeeded'
    """
    stop = stop or StopRequest()
    if dataset is None:
        try:
            dataset = load_job_data(config)
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
    # export and the dashboard read these instead of loading the data again
    retrying(store.record_dataset, job_id, dataset.facts())
    study = retrying(open_study, storage=storage, name=study_name, config=config)
    trials = retrying(study.study.get_trials, deepcopy=False)
    met = (
        sum(
            trial_phase(t) == "search"
            and (
                t.state == TrialState.COMPLETE
                or (t.state == TrialState.PRUNED and STOPPED_AT in t.user_attrs)
            )
            for t in trials
        )
        >= config.trials
    )
    # with the search's budget met, a search trial a dead worker left running need not run
    # again; a planned one must
    retrying(
        study.recover,
        store,
        job_id,
        requeue=lambda t: trial_phase(t) != "search" or not met,
    )
    gpu_share, gpus = _gpu_shares(config, dataset, start_ray)
    # what the trials run and the cache keys hash: "auto" decided for the trials' device type
    # (a trial that finds no CUDA where a GPU share promised one says so, and its key follows)
    device_type = device_type_for(config.train, gpus_per_trial=gpus)
    fingerprint = dataset.fingerprint()
    digests = {
        kind: settings_hash(resolve_settings(config.train, device_type=kind))
        for kind in ("cpu", "cuda")
    }
    recorder = Recorder(
        study=study,
        store=store,
        job_id=job_id,
        attempt=attempt,
        worker_id=worker_id,
        epochs_total=config.train.epochs,
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        weights_dir=weights_dir,
        keep_weights=config.keep_weights,
    )
    scheduler = (
        HalvingScheduler(
            rungs=retrying(
                rungs_from_store,
                store,
                job_id,
                objectives=config.objectives,
                min_epochs=config.min_epochs,
                eta=config.eta,
                epochs=config.train.epochs,
            ),
            objectives=config.objectives,
        )
        if config.early_stop == "mo-asha"
        else None
    )
    searcher = StudySearcher(
        study=study,
        config=config,
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        stop=stop,
        store=store,
        job_id=job_id,
        recorder=recorder,
        cache_key=lambda arch, seed, kind=device_type: cache_key(
            arch_hash=arch.hash(),
            data_fingerprint=fingerprint,
            settings_hash=digests[kind],
            seed=seed,
        ),
        gpu_share=gpu_share,
        on_progress=on_progress,
        stopped=None if scheduler is None else scheduler.stopped,
    )
    if searcher.settle():
        # nothing to train: the cache served it all, or an earlier attempt did the work and
        # died before its end
        recorder.prune_weights()
        return JobOutcome("succeeded", searcher.completed, searcher.failed)
    if start_ray is not None:  # before with_parameters, which puts the data into Ray
        start_ray()
    trainable = tune.with_resources(
        tune.with_parameters(
            _trainable,
            dataset=dataset,
            train_fn=train_fn,
            settings=config.train,
            device_type=device_type,
            keep_weights=recorder.keeps_weights,
        ),
        # each trial's own share: auto's differ by the candidate
        lambda trial: tune.PlacementGroupFactory(
            [{"CPU": config.cpus_per_trial, "GPU": trial["gpu_share"]}]
        ),
    )
    tune_dir = tempfile.mkdtemp(prefix="ps-tune-")
    try:
        with tune_settings():
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
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
                    callbacks=[recorder],
                ),
            )
            tuner.fit()
    finally:
        shutil.rmtree(tune_dir, ignore_errors=True)
    searcher.abandon_live()
    recorder.close_open()
    if stop.reason == "cancel":
        return JobOutcome("cancelled", searcher.completed, searcher.failed)
    if stop.reason is not None:
        return JobOutcome("interrupted", searcher.completed, searcher.failed, stop.reason)
    if searcher.finished:
        recorder.prune_weights()
        return JobOutcome("succeeded", searcher.completed, searcher.failed)
    return JobOutcome(
        "failed",
        searcher.completed,
        searcher.failed,
        f"{searcher.failed} trials failed; last error: {searcher.last_error}",
    )


def device_memory(config: JobConfig, *, start_ray: Callable[[], None] | None = None) -> int | None:
    """Bytes of memory of each GPU the job's trials may run on, for ``gpus_per_trial`` ``auto``;
    ``None`` where the trials have no GPU to run on.

    Whether there is a GPU: the Ray cluster's GPUs (Ray is started for it with ``start_ray``,
    if given, and only read if running), else this process's CUDA devices (Tune starts a Ray of
    this machine). How big it is: the job's ``gpu_memory`` (GiB); else the smallest
    :data:`GPU_MEMORY_RESOURCE` (GiB per GPU) that a live Ray node with GPUs declares; else the
    total memory of this process's CUDA device 0. What a node declares wins over what the
    driver sees, since the trials run on the nodes; the driver's device stands in on a single
    machine. ``gpu_memory`` never conjures a GPU: a share of one that no node has would leave
    every trial waiting for ever.

    Example:
        >>> with ray_session(num_cpus=1, num_gpus=0):  # doctest: +SKIP
        ...     device_memory(JobConfig.from_mapping({"trials": 1, "epochs": 1,
        ...                                           "gpus_per_trial": "auto", "gpu_memory": 16}))
        >>> # None: no GPU in the cluster, whatever gpu_memory says
    """
    if start_ray is not None:
        start_ray()
    with_gpus: list[dict[str, float]] = []
    if ray.is_initialized():
        alive = (n["Resources"] for n in ray.nodes() if n["Alive"])
        with_gpus = [r for r in alive if r.get("GPU", 0) > 0]
        if not with_gpus:
            return None
    elif not torch.cuda.is_available():
        return None
    if config.gpu_memory is not None:
        return int(config.gpu_memory * 2**30)
    declared = [r[GPU_MEMORY_RESOURCE] for r in with_gpus if GPU_MEMORY_RESOURCE in r]
    if declared:
        return int(min(declared) * 2**30)
    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)
    return None


def _gpu_shares(
    config: JobConfig, dataset: Dataset, start_ray: Callable[[], None] | None
) -> tuple[Callable[[ArchSpec], float], float]:
    """The GPU share of each trial, by the architecture it trains, and the share that decides
    the trials' device type: the job's, or for ``auto`` the memory estimate's class
    (:mod:`search.memory`) of the GPUs found (0 with none)."""
    if config.gpus_per_trial != "auto":
        fixed = config.gpus_per_trial
        return lambda arch: fixed, fixed
    if device_type_for(config.train, gpus_per_trial=1.0) != "cuda":
        return lambda arch: 0.0, 0.0  # the job trains on the CPU whatever the machine has
    memory = device_memory(config, start_ray=start_ray)
    if memory is None:
        log.info("gpus_per_trial auto: no GPU found, the trials train on the CPU")
        return lambda arch: 0.0, 0.0
    cuda = resolve_settings(config.train, device_type="cuda")
    resident = resident_dataset_bytes(
        train_images=len(dataset.x_train),
        val_images=len(dataset.x_val),
        input_shape=dataset.input_shape,
    )

    def share(arch: ArchSpec) -> float:
        estimate = estimate_memory(
            arch,
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
            batch_size=min(cuda.batch_size, len(dataset.x_train)),
            precision="bf16" if cuda.bf16 else "fp32",
            dataset_bytes=resident,
        )
        return share_class(estimate.total, memory)

    return share, 1.0


def _trainable(
    config: dict[str, Any],
    *,
    dataset: Dataset,
    train_fn: TrainFn,
    settings: TrainConfig,
    device_type: str,
    keep_weights: bool,
) -> None:
    """One candidate, inside a Tune trial: reports once per epoch, then the final metrics.

    ``settings`` are the job's, run resolved for ``device_type`` (what the cache key hashed)
    with the trial's seed. A trial given a GPU share on a node without CUDA trains its
    ``"auto"`` settings on the CPU and reports ``device_type`` so, for its key to say so.
    """
    if device_type == "cuda" and settings.device == "auto" and not torch.cuda.is_available():
        device_type = "cpu"
    settings = resolve_settings(settings, device_type=device_type)
    arch = ArchSpec.from_dict(config["arch"])
    start = time.perf_counter()
    try:

        def on_epoch(epoch: int, val_acc: float, train_loss: float, seconds: float) -> bool:
            tune.report(
                {"epoch": epoch, "val_acc": val_acc, "train_loss": train_loss, "epoch_s": seconds}
            )
            return False

        result = train_fn(
            arch,
            dataset,
            dataclasses.replace(settings, seed=config["seed"]),
            on_epoch=on_epoch,
            keep_weights=keep_weights,
        )
    except Exception as exc:  # reported, so the searcher can tell Optuna FAIL with the reason
        # out of GPU memory: the searcher runs it again with a bigger share
        oom = isinstance(exc, torch.cuda.OutOfMemoryError)
        tune.report({"error": f"{type(exc).__name__}: {exc}", "oom": oom})
        return
    ctx = ray.get_runtime_context()
    tune.report(
        {
            "final": True,
            "val_acc": result.val_acc,
            "test_acc": result.test_acc,
            "latency_ms": result.latency_ms,
            "latency_rel": result.latency_rel,
            "train_s": result.train_s,
            "device": result.device,
            "epochs_done": result.epochs_done,
            "device_type": device_type,
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
