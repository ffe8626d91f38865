"""search.study's recovery on a real SQLite study and store: no Ray, no training."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.config import JobConfig
from search.cost import Cost
from search.space import ArchSpec
from search.store import Store, optuna_storage
from search.study import (
    LOST,
    RETRY_OF,
    SAMPLER_HELP,
    SAMPLERS,
    end_open_trials,
    make_sampler,
    nsga2_population,
    open_study,
    tpe_startup,
    trial_phase,
)

ARCH = ArchSpec.from_dict({"stages": [{"downsample": "max", "kernel": 3, "skip": "none"}]})
COST = Cost(params=10, flops=100, activation_bytes=1000, receptive_field=9)


def test_recover_keeps_the_outcome_optuna_already_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    store = Store.open(url, create=True)
    config = JobConfig.from_mapping(
        {"dataset": "digits", "trials": 4, "epochs": 2, "sampler": "random"}
    )
    job = store.submit(config)
    job_study = open_study(storage=optuna_storage(url), name=job.study_name, config=config)
    study = job_study.study
    rows = {}
    for number in range(4):
        trial = study.ask()
        rows[number] = store.start_candidate(
            job_id=job.id,
            trial_number=number,
            optuna_trial_id=job_study.trial_id(number),
            arch=ARCH,
            cost=COST,
            seed=0,
            attempt=1,
            worker_id="w",
            epochs_total=2,
        )
        store.record_epoch(
            candidate_id=rows[number], epoch=1, val_acc=0.5, train_loss=1.0, seconds=0.1
        )
        # what the searcher writes before it tells Optuna, for each way a trial ends
        if number == 0:
            for key, value in (("val_acc", 0.9), ("test_acc", 0.88), ("epochs_done", 2)):
                trial.set_user_attr(key, value)
            study.tell(trial, [0.9, 100.0])
        elif number == 1:
            trial.set_user_attr("epochs_done", 1)
            trial.set_user_attr("val_acc", 0.6)
            study.tell(trial, state=TrialState.PRUNED)
        elif number == 2:
            trial.set_user_attr("error", "RuntimeError: boom")
            study.tell(trial, state=TrialState.FAIL)
        # trial 3 stays RUNNING: its worker died while it trained
    # the worker died before any candidate row followed its trial: all four still `running`
    assert [c.state for c in store.list_candidates(job.id)] == ["running"] * 4

    assert job_study.recover(store, job.id) == 1
    ended = [
        (c.trial_number, c.state, c.val_acc, c.test_acc, c.epochs_done, c.error)
        for c in store.list_candidates(job.id)
    ]
    assert ended == [
        (0, "complete", 0.9, 0.88, 2, None),
        (1, "pruned", 0.6, None, 1, "job cancelled"),
        (2, "failed", 0.5, None, 1, "RuntimeError: boom"),
        (3, "failed", 0.5, None, 1, LOST),
    ]
    trials = optuna.load_study(study_name=job.study_name, storage=optuna_storage(url)).trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.WAITING,
    ]
    assert (trials[3].user_attrs["error"], trials[4].user_attrs[RETRY_OF]) == (LOST, 3)

    assert job_study.recover(store, job.id) == 0  # again: nothing left to repair
    again = [
        (c.trial_number, c.state, c.val_acc, c.test_acc, c.epochs_done, c.error)
        for c in store.list_candidates(job.id)
    ]
    assert again == ended
    store.close()


def _job_with_open_trials(tmp_path: Path) -> tuple[str, Store, int, str]:
    """A job whose attempt left two trials RUNNING: one with a ``running`` row, one without
    (asked, never started)."""
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    store = Store.open(url, create=True)
    config = JobConfig.from_mapping({"dataset": "digits", "trials": 4, "epochs": 2})
    job = store.submit(config)
    job_study = open_study(storage=optuna_storage(url), name=job.study_name, config=config)
    for _ in range(2):
        job_study.study.ask({"s1.kernel": optuna.distributions.CategoricalDistribution([3, 5])})
    store.start_candidate(
        job_id=job.id,
        trial_number=0,
        optuna_trial_id=job_study.trial_id(0),
        arch=ARCH,
        cost=COST,
        seed=0,
        attempt=1,
        worker_id="w",
        epochs_total=2,
    )
    return url, store, job.id, job.study_name


def test_an_ended_job_is_found_and_closed_with_its_reason(tmp_path: Path) -> None:
    url, store, job_id, study_name = _job_with_open_trials(tmp_path)
    claimed = store.claim("w", 60)
    assert claimed is not None
    assert store.ended_with_open_trials() == []  # running jobs are their worker's
    store.finish_job(job_id, "w", "failed", error="attempt 1/1: OSError: disk full")
    assert [j.id for j in store.ended_with_open_trials()] == [job_id]

    failed = end_open_trials(
        storage=optuna_storage(url),
        store=store,
        job_id=job_id,
        study_name=study_name,
        reason="attempt 1/1: OSError: disk full",
    )
    study = optuna.load_study(study_name=study_name, storage=optuna_storage(url))
    assert failed == 2
    assert [(t.state, t.user_attrs["error"]) for t in study.trials] == [
        (TrialState.FAIL, "attempt 1/1: OSError: disk full")
    ] * 2
    [row] = store.list_candidates(job_id)
    assert (row.state, row.error) == ("failed", "attempt 1/1: OSError: disk full")
    assert store.ended_with_open_trials() == []
    assert (
        end_open_trials(  # again: nothing left to do
            storage=optuna_storage(url),
            store=store,
            job_id=job_id,
            study_name=study_name,
            reason="x",
        )
        == 0
    )


def test_a_crashed_attempt_that_will_run_again_requeues_its_open_trials(tmp_path: Path) -> None:
    url, store, job_id, study_name = _job_with_open_trials(tmp_path)
    end_open_trials(
        storage=optuna_storage(url),
        store=store,
        job_id=job_id,
        study_name=study_name,
        reason="attempt 1/3: RuntimeError: boom",
        requeue=True,
    )
    study = optuna.load_study(study_name=study_name, storage=optuna_storage(url))
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    assert {t.user_attrs[RETRY_OF] for t in study.trials[2:]} == {0, 1}
    # killed before they were seeded: the re-runs get seeds of their own, not None
    assert all("seed" not in t.user_attrs for t in study.trials[2:])
    assert {t.user_attrs["error"] for t in study.trials[:2]} == {"attempt 1/3: RuntimeError: boom"}
    assert LOST not in {t.user_attrs.get("error") for t in study.trials}


def test_a_job_whose_study_was_never_created_has_only_rows_to_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    store = Store.open(url, create=True)
    job = store.submit(JobConfig.from_mapping({"dataset": "digits", "trials": 1, "epochs": 1}))
    assert (
        end_open_trials(
            storage=optuna_storage(url),
            store=store,
            job_id=job.id,
            study_name=job.study_name,
            reason="r",
        )
        == 0
    )


def test_a_planned_trial_run_again_keeps_its_phase_replicate_reference_and_seed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    store = Store.open(url, create=True)
    config = JobConfig.from_mapping(
        {"dataset": "digits", "trials": 1, "epochs": 1, "seeds": 3, "ablate": "downsample"}
    )
    job = store.submit(config)
    job_study = open_study(storage=optuna_storage(url), name=job.study_name, config=config)
    params = {k: v for k, v in ARCH.params().items() if k in config.space.distributions()}
    planned = {
        "phase": "ablate",
        "replicate": 2,
        "reference": 0,
        "seed": 77,
        "arch_hash": ARCH.hash(),
    }
    search = job_study.study.ask()  # a search trial, asked by the sampler, never prepared
    job_study.plain().enqueue_trial(params, user_attrs=planned)
    ablate = job_study.plain().ask()
    assert trial_phase(ablate) == "ablate" and trial_phase(search) == "search"
    # the worker died while both ran; its search budget was met, so only the planned one
    # runs again
    assert job_study.recover(store, job.id, requeue=lambda t: trial_phase(t) != "search") == 2
    trials = optuna.load_study(study_name=job.study_name, storage=optuna_storage(url)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    retry = trials[2]
    assert retry.user_attrs == {**planned, RETRY_OF: ablate.number}
    assert retry.system_attrs["fixed_params"] == params
    assert trial_phase(retry) == "ablate"
    store.close()


def _search(config: JobConfig, value: Callable[[ArchSpec], float]) -> list[ArchSpec]:
    """The architectures a search with ``config`` proposes, one at a time, each told
    ``value`` as its val_acc (its FLOPs a constant) before the next is asked."""
    job = open_study(storage=optuna.storages.InMemoryStorage(), name="s", config=config)
    archs = []
    for _ in range(config.trials):
        trial = job.study.ask()
        job.assign_generation(trial)
        arch = config.space.sample(trial)
        job.study.tell(trial, [value(arch), 100.0])
        archs.append(arch)
    return archs


def _kernels_3(arch: ArchSpec) -> float:
    return sum(s.kernel == 3 for s in arch.stages) / len(arch.stages)


def _kernels_7(arch: ArchSpec) -> float:
    return sum(s.kernel == 7 for s in arch.stages) / len(arch.stages)


DIGITS = {"dataset": "digits", "trials": 16, "epochs": 1, "seed": 4}


def test_the_default_sampler_learns_from_the_results_after_its_random_start() -> None:
    config = JobConfig.from_mapping(DIGITS)
    start = tpe_startup(config.trials)
    small, large = _search(config, _kernels_3), _search(config, _kernels_7)
    drawn = _search(JobConfig.from_mapping({**DIGITS, "sampler": "random"}), _kernels_3)
    # the random start is random search's own draws, whatever the results
    assert small[:start] == large[:start] == drawn[:start]
    # then every proposal follows the results: told that 3x3 kernels pay, it proposes more of
    # them than random search did, and more than when told that 7x7 ones do
    assert all(a != b for a, b in zip(small[start:], large[start:], strict=True))
    assert sum(map(_kernels_3, small[start:])) > sum(map(_kernels_3, drawn[start:]))
    assert sum(map(_kernels_3, small[start:])) > sum(map(_kernels_3, large[start:]))
    assert sum(map(_kernels_7, large[start:])) > sum(map(_kernels_7, small[start:]))


def test_the_default_sampler_proposes_no_architecture_twice_while_others_remain() -> None:
    # told that the nearer an architecture is to one of them the better, plain TPE (the same
    # settings) proposes one architecture twice in this search
    config = JobConfig.from_mapping({**DIGITS, "seed": 0})
    first = _search(config, lambda arch: 0.0)[0].params()

    def near(arch: ArchSpec) -> float:
        return sum(v == first[k] for k, v in arch.params().items()) / len(first)

    assert len(set(_search(config, near))) == config.trials
    # a space of two architectures: the third proposal must repeat one, and does
    space = {"stages": 1, "downsample": ["max"], "kernel": [3], "skip": ["none", "proj"]}
    tiny = JobConfig.from_mapping({**DIGITS, "trials": 4, "space": space})
    assert len(set(_search(tiny, _kernels_3))) == 2


def test_samplers_are_sized_from_the_budget() -> None:
    assert [tpe_startup(n) for n in (1, 8, 16, 40, 1000)] == [3, 3, 4, 10, 10]
    assert [nsga2_population(n) for n in (1, 8, 16, 100, 1000)] == [4, 4, 8, 50, 50]
    # a 16-candidate NSGA-II search breeds its second generation from the first 8 results
    config = JobConfig.from_mapping({**DIGITS, "sampler": "nsga2"})
    job = open_study(storage=optuna.storages.InMemoryStorage(), name="g", config=config)
    sampler = job.study.sampler
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    generations = []
    for _ in range(config.trials):
        trial = job.study.ask()
        job.assign_generation(trial)
        generations.append(sampler.get_trial_generation(job.study, job.frozen_trial(trial.number)))
        job.study.tell(trial, [_kernels_3(config.space.sample(trial)), 100.0])
    assert generations == [0] * 8 + [1] * 8


def test_an_unknown_sampler_is_refused_with_one_line_naming_the_known_ones() -> None:
    expected = "unknown sampler 'cmaes' (expected one of nsga2, tpe, random, grid)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        make_sampler("cmaes", seed=0, space_grid={}, trials=4)
    with pytest.raises(ValueError, match=re.escape(expected)):
        JobConfig.from_mapping({**DIGITS, "sampler": "cmaes"})
    assert set(SAMPLER_HELP) == set(SAMPLERS)
