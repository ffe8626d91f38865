"""A simulated two-node Ray cluster with logical GPUs: trials get the configured GPU share."""

from __future__ import annotations

import optuna
import pytest
import ray
from ray.cluster_utils import Cluster

from search.cache import cache_key, resolve_settings, settings_hash
from search.config import JobConfig
from search.store import Store, optuna_storage
from workers.data import load_dataset
from workers.ray_session import ray_session
from workers.runner import run_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as env:
        # what ray_session sets for the Ray it starts; the simulated nodes start here instead
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 2})
        nodes.add_node(num_cpus=1, num_gpus=2)
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
        ray.shutdown()
        nodes.shutdown()


def test_trials_receive_the_fractional_gpu_share_across_nodes(cluster, tmp_path):
    url = f"sqlite:///{tmp_path / 'ps.db'}"
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
    store = Store.open(url, create=True)
    job = store.submit(config)
    assert store.claim("w", lease_seconds=600) is not None
    with ray_session():  # joins the cluster the fixture connected to
        outcome = run_job(
            store=store,
            job_id=job.id,
            config=config,
            study_name=job.study_name,
            attempt=1,
            worker_id="w",
            storage=optuna_storage(url),
            dataset=load_dataset("digits"),
        )
    assert outcome.status == "succeeded"
    trials = optuna.load_study(study_name=job.study_name, storage=optuna_storage(url)).trials
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
            for c in store.list_candidates(job.id)
        }
        assert (keys == {c.cache_key for c in store.list_candidates(job.id)}) is expected
