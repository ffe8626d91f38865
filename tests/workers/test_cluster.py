"""A simulated two-node Ray cluster with logical GPUs: trials get the configured GPU share, or
with ``auto`` the share class of their memory estimate on the GPU memory the nodes declare; a
trial that runs out of GPU memory runs again with the next class; a job optimises latency_rel.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import optuna
import pytest
import ray
import torch
from optuna.trial import TrialState
from ray import cloudpickle
from ray.cluster_utils import Cluster
from test_runner import fake_train

from search.cache import cache_key, resolve_settings, settings_hash
from search.config import JobConfig
from search.space import ArchSpec
from search.store import Store, optuna_storage
from search.study import OOM_RETRY_OF
from workers.data import load_dataset
from workers.ray_session import ray_session
from workers.runner import JobOutcome, device_memory, run_job

pytestmark = pytest.mark.slow

# trial processes unpickle the injected train functions; they cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# what each node declares of each of its GPUs (a whole number: Ray's node resources are)
GPU_GIB = 5


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as env:
        # what ray_session sets for the Ray it starts; the simulated nodes start here instead
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        gpu_memory = {"gpu_memory_gib": GPU_GIB}
        nodes = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "num_gpus": 2, "resources": gpu_memory},
        )
        nodes.add_node(num_cpus=1, num_gpus=2, resources=gpu_memory)
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
        ray.shutdown()
        nodes.shutdown()


def test_trials_receive_the_fractional_gpu_share_across_nodes(cluster, tmp_path):
    config = JobConfig.from_mapping(
        {
            "dataset": "digits",
            "trials": 4,
            "epochs": 1,
            "sampler": "random",
            "concurrency": 4,
            "cpus_per_trial": 0.5,
            "gpus_per_trial": 0.5,
            "batch_size": 64,
            "space": {"stages": 2, "widths": [4, 8]},
        }
    )
    # ray_session joins the cluster the fixture connected to
    store, job_id, outcome, trials = _run(tmp_path, config)
    assert outcome.status == "succeeded"
    assert len(trials) == 4
    for t in trials:
        assert t.user_attrs["ray_resources"] == {"CPU": 0.5, "GPU": 0.5}
        # fractional trials on a node share its first device
        assert t.user_attrs["cuda_visible_devices"] == "0"
    assert len({t.user_attrs["ray_node"] for t in trials}) == 2, "trials spread over both nodes"
    # the logical GPUs have no CUDA behind them: the trials trained on the CPU, and their cache
    # keys say so, so no CUDA job is ever served these results
    data = load_dataset("digits").fingerprint()
    for kind, expected in (("cpu", True), ("cuda", False)):
        digest = settings_hash(resolve_settings(config.train, device_type=kind))
        keys = {
            cache_key(
                arch_hash=c.arch_hash, data_fingerprint=data, settings_hash=digest, seed=c.seed
            )
            for c in store.list_candidates(job_id)
        }
        assert (keys == {c.cache_key for c in store.list_candidates(job_id)}) is expected


def _run(tmp_path: Any, config: JobConfig, **kw: Any) -> tuple[Store, int, JobOutcome, list[Any]]:
    """Submit ``config`` to a fresh SQLite database and run it on the cluster."""
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    store = Store.open(url, create=True)
    job = store.submit(config)
    assert store.claim("w", lease_seconds=600) is not None
    with ray_session():
        outcome = run_job(
            store=store,
            job_id=job.id,
            config=config,
            study_name=job.study_name,
            attempt=1,
            worker_id="w",
            storage=optuna_storage(url),
            dataset=load_dataset("digits"),
            **kw,
        )
    trials = optuna.load_study(study_name=job.study_name, storage=optuna_storage(url)).trials
    return store, job.id, outcome, trials


def _auto(widths: list[int], **kw: Any) -> JobConfig:
    """A one-stage job on digits with ``gpus_per_trial`` auto whose widths are searched."""
    return JobConfig.from_mapping(
        {
            "dataset": "digits",
            "epochs": 1,
            "sampler": "random",
            "concurrency": 4,
            "cpus_per_trial": 0.5,
            "gpus_per_trial": "auto",
            "batch_size": 1024,
            "space": {
                "stages": 1,
                "widths": [widths],
                "downsample": ["max"],
                "kernel": [3],
                "skip": ["none"],
            },
            **kw,
        }
    )


def _oom_below(need: float, arch: ArchSpec, dataset: Any, config: Any, **kw: Any) -> Any:
    """A training that runs out of GPU memory with less than ``need`` of a GPU."""
    share = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    if share < need:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
    return fake_train(arch, dataset, config, **kw)


def test_the_gpu_memory_the_nodes_declare_is_the_device_memory(cluster):
    config = _auto([4], trials=1)
    assert device_memory(config) == GPU_GIB * 2**30
    assert device_memory(_auto([4], trials=1, gpu_memory=1.5)) == 1.5 * 2**30


def test_auto_gives_each_candidate_the_share_class_of_its_memory_estimate(cluster, tmp_path):
    # with bf16 (CUDA's resolved precision), a batch of all 1,258 training images and the
    # 512 MiB context, the estimates are about 516, 720 and 1,423 MiB: on the 5 GiB GPUs the
    # nodes declare, 1/8, 1/4 and 1/2 of one
    expected = {4: 0.125, 256: 0.25, 1024: 0.5}
    store, job_id, outcome, trials = _run(
        tmp_path, _auto([4, 256, 1024], trials=5, seed=1), train_fn=fake_train
    )
    assert outcome.status == "succeeded"
    rows = {c.trial_number: c for c in store.list_candidates(job_id)}
    shares = {}
    for t in trials:
        share = expected[ArchSpec.from_json(rows[t.number].arch_json).stages[0].width]
        assert t.user_attrs["gpu_share"] == share
        assert t.user_attrs["ray_resources"] == {"CPU": 0.5, "GPU": share}
        shares[t.number] = share
    assert len(set(shares.values())) >= 2, "the draws cover more than one class"
    assert {n: c.gpu_share for n, c in rows.items()} == shares


def test_a_trial_out_of_gpu_memory_runs_again_with_the_next_class(cluster, tmp_path):
    # width 4 needs 1/8 of a GPU by the estimate; the training needs 1/4
    store, job_id, outcome, trials = _run(
        tmp_path, _auto([4], trials=2), train_fn=functools.partial(_oom_below, 0.25)
    )
    assert (outcome.status, outcome.completed, outcome.failed) == ("succeeded", 2, 0)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    reruns = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 4 and len(failed) == 2 and len(reruns) == 2  # budget exact
    for t in failed:
        assert t.user_attrs["gpu_share"] == 0.125
        assert t.user_attrs["error"].startswith(
            "out of GPU memory at share 0.125, run again at 0.25: OutOfMemoryError: CUDA out"
        )
    originals = {t.number: t for t in failed}
    for t in reruns:
        original = originals.pop(t.user_attrs[OOM_RETRY_OF])
        assert t.params == original.params
        for key in ("arch_hash", "seed", "phase"):
            assert t.user_attrs[key] == original.user_attrs[key]
        assert t.user_attrs["gpu_share"] == 0.25
        assert t.user_attrs["ray_resources"] == {"CPU": 0.5, "GPU": 0.25}
    assert not originals
    job = store.get_job(job_id)
    assert job.trials_done == 2
    rows = {c.trial_number: c for c in store.list_candidates(job_id)}
    assert {n: (c.state, c.gpu_share) for n, c in rows.items()} == {
        t.number: (
            "complete" if t.state == TrialState.COMPLETE else "failed",
            t.user_attrs["gpu_share"],
        )
        for t in trials
    }


def test_a_second_out_of_memory_error_is_a_failure(cluster, tmp_path):
    _, _, outcome, trials = _run(
        tmp_path, _auto([4], trials=1), train_fn=functools.partial(_oom_below, 2.0)
    )
    # each drawn training ran twice (1/8, then 1/4) and failed; three failures end the job
    assert (outcome.status, outcome.completed, outcome.failed) == ("failed", 0, 3)
    assert [t.user_attrs["gpu_share"] for t in trials] == [0.125, 0.25] * 3
    assert [t.user_attrs.get(OOM_RETRY_OF) for t in trials] == [None, 0, None, 2, None, 4]
    assert all(t.state == TrialState.FAIL for t in trials)
    assert trials[1].user_attrs["error"].startswith("OutOfMemoryError: CUDA out of memory")


def test_a_job_can_minimise_latency_rel(cluster, tmp_path):
    config = JobConfig.from_mapping(
        {
            "dataset": "digits",
            "trials": 2,
            "epochs": 1,
            "sampler": "random",
            "concurrency": 2,
            "cpus_per_trial": 0.5,
            "batch_size": 64,
            "objectives": "val_acc,latency_rel",
            "space": {"stages": 1, "widths": [[4, 8]]},
        }
    )
    store, job_id, outcome, trials = _run(tmp_path, config)
    assert outcome.status == "succeeded"
    rows = {c.trial_number: c for c in store.list_candidates(job_id)}
    for t in trials:
        rel = t.user_attrs["latency_rel"]
        assert t.values == [t.user_attrs["val_acc"], rel] and rel > 0
        row = rows[t.number]
        assert (row.latency_rel, row.device, row.gpu_share) == (rel, "cpu", None)
        # the same process measured the candidate and the reference, alike
        assert row.latency_ms is not None and row.latency_ms / rel > 0
