"""The result cache: data fingerprints, and jobs on a real local Ray whose trainings are served
by earlier ones (an injected training that trains nothing, so only the bookkeeping costs)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from ray import cloudpickle
from test_runner import (  # the runner tests' Ray, job and fake training
    _drawn,
    fake_train,
    ray_instance,  # noqa: F401
    small_config,
    submit_and_run,
    trainings,
)

from search.config import JobConfig
from search.datasets import DatasetFacts
from search.design import replicate_seed
from search.space import ArchSpec
from search.store import Store, optuna_storage
from workers.data import load_dataset, load_job_data

cloudpickle.register_pickle_by_value(sys.modules[__name__])

NPZ_SPACE = {"stages": 2, "widths": [4, 8], "input": "1x8x8"}


def _npz(path: Path, *, changed: bool = False) -> Path:
    """digits as an .npz file; ``changed``: one pixel differs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.uint8)
    if changed:
        x[0, 0, 0] += 1
    np.savez(path, x_train=x, y_train=digits.target)
    return path


def _npz_job(data: Path, **kw: Any) -> JobConfig:
    return small_config(dataset="npz", data_dir=str(data), space=NPZ_SPACE, **{"trials": 2, **kw})


def _load(config: JobConfig, cache: Path) -> Any:
    return load_dataset(
        "npz", data_dir=config.data_dir, seed=config.seed, cache_dir=cache, input_shape=(1, 8, 8)
    )


def _curves(url: str) -> dict[int, list[tuple[int, float]]]:
    with sa.create_engine(url).connect() as conn:
        found = conn.execute(
            sa.text(
                "select candidate_id, epoch, val_acc from ps_epochs order by candidate_id, epoch"
            )
        ).all()
    curves: dict[int, list[tuple[int, float]]] = {}
    for candidate_id, epoch, val_acc in found:
        curves.setdefault(candidate_id, []).append((epoch, val_acc))
    return curves


# --------------------------------------------------------------------------- fingerprints


def test_the_fingerprint_follows_the_data_and_the_split_not_the_path(tmp_path: Path) -> None:
    cache = tmp_path / "decoded"
    a = load_dataset("npz", data_dir=_npz(tmp_path / "a.npz"), cache_dir=cache)
    same = load_dataset("npz", data_dir=_npz(tmp_path / "b.npz"), cache_dir=cache)
    changed = load_dataset("npz", data_dir=_npz(tmp_path / "c.npz", changed=True), cache_dir=cache)
    resplit = load_dataset("npz", data_dir=tmp_path / "a.npz", cache_dir=cache, seed=1)
    wider = load_dataset("npz", data_dir=tmp_path / "a.npz", cache_dir=cache, val_fraction=0.3)
    prints = [d.fingerprint() for d in (a, same, changed, resplit, wider)]
    assert prints[0] == prints[1]
    assert len(set(prints[1:])) == 4
    assert all(len(p) == 32 and int(p, 16) >= 0 for p in prints)
    # what the job records: read back from a row written before fingerprints (None) or after
    facts = a.facts()
    assert facts.fingerprint == prints[0]
    assert DatasetFacts.from_dict(facts.to_dict()) == facts
    old = {k: v for k, v in facts.to_dict().items() if k != "fingerprint"}
    assert DatasetFacts.from_dict(old).fingerprint is None


def test_a_jobs_validation_share_splits_its_data() -> None:
    base = {"dataset": "digits", "trials": 1, "epochs": 1}
    default = load_job_data(JobConfig.from_mapping(base))
    wider = load_job_data(JobConfig.from_mapping({**base, "val_fraction": 0.3}))
    assert (default.val_fraction, wider.val_fraction) == (0.1, 0.3)
    assert (len(default.x_val), len(wider.x_val)) == (180, 539)
    # the test split stays the dataset's fifth
    assert len(default.x_test) == len(wider.x_test) == 359


# --------------------------------------------------------------------------- across jobs


@pytest.mark.slow
def test_a_second_identical_job_trains_nothing_and_is_served_the_same_results(
    ray_instance,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    calls, artifacts = tmp_path / "calls.jsonl", tmp_path / "artifacts"
    train_fn = functools.partial(fake_train, calls=calls)
    config = _npz_job(_npz(tmp_path / "d.npz"), trials=3, keep_weights="all")
    dataset = _load(config, tmp_path / "decoded")
    store, first, outcome, study = submit_and_run(
        url, config, train_fn=train_fn, artifacts=artifacts, dataset=dataset
    )
    assert outcome.status == "succeeded"
    assert len(trainings(calls)) == 3
    # the trials got the settings the keys hash: "auto" decided for a CPU trial
    assert {(c["device"], c["bf16"], c["channels_last"]) for c in trainings(calls)} == {
        ("cpu", False, False)
    }
    info = store.get_job(first.id)
    assert (info.trained, info.cached) == (3, 0)
    sources = {r.trial_number: r for r in store.list_candidates(first.id)}

    store, second, outcome, again = submit_and_run(
        url, config, train_fn=train_fn, artifacts=artifacts, dataset=dataset
    )
    assert outcome.status == "succeeded"
    assert len(trainings(calls)) == 3  # nothing more trained
    info = store.get_job(second.id)
    assert (info.trained, info.cached, info.trials_done) == (0, 3, 3)
    rows = store.list_candidates(second.id)
    curves = _curves(url)
    assert len(rows) == 3
    for row in rows:
        source = sources[row.trial_number]  # the sampler draws the first job's sequence again
        assert row.cached_from == source.id and row.state == "complete"
        assert (row.arch_hash, row.seed, row.cache_key) == (
            source.arch_hash,
            source.seed,
            source.cache_key,
        )
        assert row.seed == replicate_seed(config.seed, 0)
        assert (row.val_acc, row.test_acc, row.latency_ms, row.train_s, row.device) == (
            source.val_acc,
            source.test_acc,
            source.latency_ms,
            source.train_s,
            source.device,
        )
        assert row.epochs_done == row.epochs_total == 1
        assert curves[row.id] == curves[source.id]
        # the source's weights, one file on disk under both jobs' names
        mine = artifacts / f"job-{second.id}" / f"trial-{row.trial_number}.pt"
        theirs = artifacts / f"job-{first.id}" / f"trial-{source.trial_number}.pt"
        assert mine.read_bytes() == f"{row.arch_hash}/{row.seed}".encode()
        assert os.stat(mine).st_ino == os.stat(theirs).st_ino
    told = [(t.state, t.values, t.user_attrs["cached_from"]) for t in again.trials]
    assert told == [
        (TrialState.COMPLETE, study.trials[r.trial_number].values, sources[r.trial_number].id)
        for r in rows
    ]

    # a larger budget: the three known draws come from the cache and count, one more trains
    store, third, outcome, _ = submit_and_run(
        url,
        _npz_job(tmp_path / "d.npz", trials=4, keep_weights="all"),
        train_fn=train_fn,
        artifacts=artifacts,
        dataset=dataset,
    )
    info = store.get_job(third.id)
    assert (outcome.status, info.trials_done, info.trained, info.cached) == ("succeeded", 4, 1, 3)
    assert len(trainings(calls)) == 4


class _MustTrain(Exception):
    """Raised where a job would start Ray: something missed the cache."""


def _must_train() -> None:
    raise _MustTrain


@pytest.mark.slow
def test_a_changed_setting_seed_or_data_misses_the_cache_and_no_cache_trains_again(
    ray_instance,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    decoded = tmp_path / "decoded"
    data, changed = _npz(tmp_path / "d.npz"), _npz(tmp_path / "e.npz", changed=True)
    base = _npz_job(data)
    store, first, _, _ = submit_and_run(
        url, base, train_fn=fake_train, dataset=_load(base, decoded)
    )
    keys = {r.cache_key for r in store.list_candidates(first.id)}
    assert len(keys) == 2 and None not in keys
    # the same job again is served whole, without starting Ray
    store, job, outcome, _ = submit_and_run(
        url, base, train_fn=fake_train, dataset=_load(base, decoded), start_ray=_must_train
    )
    assert (outcome.status, store.get_job(job.id).cached) == ("succeeded", 2)

    for config in (
        _npz_job(data, lr=0.1),
        _npz_job(data, seed=4),
        _npz_job(changed),
        _npz_job(data, cache=False),
    ):
        with pytest.raises(_MustTrain):
            submit_and_run(
                url,
                config,
                train_fn=fake_train,
                dataset=_load(config, decoded),
                start_ray=_must_train,
            )
        asked = Store.open(url).list_jobs()[-1]
        # nothing was served: the first trial asked is the one that must train
        assert (asked.cached, asked.trained) == (0, 0), config
    # the trial --no-cache would train has the key of the first job's trial: later jobs hit it
    study = optuna.load_study(study_name=asked.study_name, storage=optuna_storage(url))
    assert study.trials[0].user_attrs["cache_key"] in keys


@pytest.mark.slow
def test_two_trials_of_one_job_with_the_same_key_share_one_training(
    ray_instance,  # noqa: F811
    tmp_path: Path,
) -> None:
    # two architectures, four trials: draws repeat; a seed whose first two draws are equal
    # makes the second wait for the first while it trains
    def config_for(seed: int) -> JobConfig:
        space = {"stages": 1, "widths": [4], "downsample": ["max"], "kernel": [3]}
        return small_config(trials=4, seed=seed, space={**space, "skip": ["none", "proj"]})

    seed = next(s for s in range(50) if len(set(_drawn(config_for(s), 2))) == 1)
    config = config_for(seed)
    calls = tmp_path / "calls.jsonl"
    store, job, outcome, study = submit_and_run(
        f"sqlite:///{tmp_path / 'ps.db'}",
        config,
        train_fn=functools.partial(fake_train, calls=calls),
    )
    assert outcome.status == "succeeded"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    archs = [ArchSpec.from_json(r.arch_json) for r in store.list_candidates(job.id)]
    assert archs[0] == archs[1]
    distinct = len(set(archs))
    info = store.get_job(job.id)
    assert (info.trained, info.cached) == (distinct, 4 - distinct)
    assert sorted(c["arch"] for c in trainings(calls)) == sorted({a.hash() for a in archs})
    rows = store.list_candidates(job.id)
    assert rows[1].cached_from == rows[0].id
    assert study.trials[1].values == study.trials[0].values
