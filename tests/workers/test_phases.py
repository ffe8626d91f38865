"""A job's phases: search, then confirm (more seeds for the front), then ablate (one-choice
variants of the reference), on a real local Ray with an injected training that trains nothing;
and the planning itself, without Ray, across a crash."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray import cloudpickle
from test_runner import (  # the runner tests' Ray, job and fake training
    fake_train,
    ray_instance,  # noqa: F401
    small_config,
    submit_and_run,
)

from search.analysis import ablation_effects
from search.config import JobConfig
from search.cost import arch_cost
from search.design import replicate_seed
from search.pareto import architecture_means, pareto_front
from search.query import load_candidates, load_front
from search.space import ArchSpec
from search.store import Store, optuna_storage
from search.study import open_study, trial_phase
from search.vocabulary import STAGE_KEYS
from workers.recorder import Recorder
from workers.searcher import StopRequest, StudySearcher

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _planted(arch: ArchSpec, seed: int) -> float:
    """Accuracy with a planted effect: a strided stage 2 costs 5 points. Each seed moves every
    architecture alike by ±2 points (data order, initialisation), each training by ±0.3 more."""
    by_seed = np.random.default_rng(seed).standard_normal()
    by_training = np.random.default_rng([seed, int(arch.hash(), 16) % 2**32]).standard_normal()
    effect = -0.05 if arch.stages[1].downsample == "strided" else 0.0
    base = 0.8 + 0.01 * (arch.stages[0].downsample == "max")
    return float(base + 0.02 * by_seed + 0.003 * by_training + effect)


def _fails_third_seed(arch: ArchSpec, seed: int, *, job_seed: int) -> float:
    # the third seed of the confirm phase (replicate 2) and of the ablation's (5)
    if seed in (replicate_seed(job_seed, 2), replicate_seed(job_seed, 5)):
        raise RuntimeError("third seed failed")
    return _planted(arch, seed)


def _differences(a: ArchSpec, b: ArchSpec) -> list[tuple[int, str]]:
    return [
        (i, key)
        for i, (sa, sb) in enumerate(zip(a.stages, b.stages, strict=True), 1)
        for key in STAGE_KEYS
        if getattr(sa, key) != getattr(sb, key)
    ]


def _training(trial: optuna.trial.FrozenTrial) -> tuple[str, int]:
    return trial.user_attrs["arch_hash"], trial.user_attrs["replicate"]


@pytest.mark.slow
def test_confirm_and_ablate_pair_seeds_and_resolve_a_planted_effect(
    ray_instance,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = small_config(
        trials=4,
        seeds=3,
        ablate="downsample",
        space={"stages": 2, "widths": [4, 8], "kernel": [3], "skip": ["none"]},
    )
    progress: list[tuple[str, int, int | None, int]] = []
    with caplog.at_level(logging.INFO, logger="workers.searcher"):
        store, job, outcome, study = submit_and_run(
            f"sqlite:///{tmp_path / 'ps.db'}",
            config,
            train_fn=functools.partial(fake_train, accuracy=_planted),
            on_progress=lambda *report: progress.append(report),
            artifacts=tmp_path / "artifacts",
        )
    assert (outcome.status, outcome.failed) == ("succeeded", 0)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    by_phase = {p: [t for t in study.trials if trial_phase(t) == p] for p in ("search", "confirm")}
    by_phase["ablate"] = [t for t in study.trials if trial_phase(t) == "ablate"]
    assert len(by_phase["search"]) == 4
    assert {t.user_attrs["replicate"] for t in by_phase["search"]} == {0}
    frame = load_candidates(store, job.id)
    # replicate k of every architecture has one seed: results pair across architectures
    assert (frame["seed"] == [replicate_seed(config.seed, k) for k in frame["replicate"]]).all()

    # confirm: the search's front, two more seeds each
    objectives = list(config.objectives)
    searched = frame[frame["phase"] == "search"]
    front = pareto_front(architecture_means(searched, objectives), objectives)
    assert sorted(_training(t) for t in by_phase["confirm"]) == sorted(
        (h, k) for h in front["arch_hash"] for k in (1, 2)
    )
    # ablate: around the front member (means over three seeds) with the best val_acc
    confirmed = architecture_means(frame[frame["phase"] != "ablate"], objectives)
    best = pareto_front(confirmed, objectives).sort_values("val_acc", ascending=False).iloc[0]
    reference = ArchSpec.from_row(best.to_dict())
    info = store.get_job(job.id)
    plan = info.plan
    assert plan is not None
    assert plan["ablate"]["references"] == [int(best["trial"])]
    assert plan["ablate"]["skipped"] == []
    for trial in by_phase["ablate"]:
        arch = config.space.from_params(trial.params)
        assert _differences(reference, arch) in ([], [(1, "downsample")], [(2, "downsample")])
        assert trial.user_attrs["reference"] == int(best["trial"])
    planned = [_training(t) for t in by_phase["ablate"] + by_phase["confirm"]]
    assert len(planned) == len(set(planned))  # nothing planned twice, nothing the search held
    assert not set(planned) & {_training(t) for t in by_phase["search"]}
    # the design is whole: the reference and its six variants, on three fresh seeds each (the
    # reference's first three chose it)
    design = frame.groupby("arch_hash")["replicate"].apply(set)
    variants = {h for h in design.index if len(_differences(reference, _arch(frame, h))) == 1}
    assert len(variants) == 6
    assert all(design[h] >= {3, 4, 5} for h in variants)
    assert design[reference.hash()] == {0, 1, 2, 3, 4, 5}

    totals = {p: len(by_phase[p]) for p in by_phase}
    assert (
        plan["confirm"]["total"] == totals["confirm"]
        and plan["ablate"]["total"] == totals["ablate"]
    )
    assert [(p.name, p.done, p.total, p.failed) for p in info.phases] == [
        (p, totals[p], totals[p], 0) for p in ("search", "confirm", "ablate")
    ]
    assert ("confirm", 0, totals["confirm"], 0) in progress and progress[-1] == (
        "ablate",
        totals["ablate"],
        totals["ablate"],
        0,
    )
    for phase in ("confirm", "ablate"):
        assert f"job {job.id}: {phase} phase: {totals[phase]} trainings planned" in caplog.messages

    # the weights kept are those of every seed of the front's architectures
    members = load_front(store, job.id).members
    kept = {p.name for p in (tmp_path / "artifacts" / f"job-{job.id}").iterdir()}
    assert kept == {f"trial-{n}.pt" for trials in members["trials"] for n in trials}
    assert len(kept) > len(members)  # a member's replicates too

    effects = ablation_effects(frame, references=[int(best["trial"])])
    assert reference.stages[1].downsample != "strided"
    strided = effects[(effects["stage"] == 2) & (effects["to"] == "strided")].iloc[0]
    assert (strided["verdict"], strided["n"]) == ("worse", 3)
    assert strided["ci_high"] < 0 and abs(strided["delta"] + 0.05) < 0.02


def _arch(frame: Any, arch_hash: str) -> ArchSpec:
    return ArchSpec.from_row(frame[frame["arch_hash"] == arch_hash].iloc[0].to_dict())


@pytest.mark.slow
def test_failed_planned_trials_are_reported_not_retried_and_the_job_succeeds(
    ray_instance,  # noqa: F811
    tmp_path: Path,
) -> None:
    # the grid sampler would fail a trial it did not hand out; two downsamples are allowed of
    # the four an ablation tries
    config = small_config(
        trials=3,
        sampler="grid",
        seeds=3,
        ablate="downsample",
        space={
            "stages": 2,
            "widths": [4, 8],
            "downsample": ["max", "strided"],
            "kernel": [3],
            "skip": ["none"],
        },
    )
    store, job, outcome, study = submit_and_run(
        f"sqlite:///{tmp_path / 'ps.db'}",
        config,
        train_fn=functools.partial(
            fake_train, accuracy=functools.partial(_fails_third_seed, job_seed=config.seed)
        ),
    )
    assert outcome.status == "succeeded", outcome.error
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and outcome.failed == len(failed)
    assert {(trial_phase(t), t.user_attrs["replicate"]) for t in failed} <= {
        ("confirm", 2),
        ("ablate", 5),
    }
    assert {t.user_attrs["error"] for t in failed} == {"RuntimeError: third seed failed"}
    assert not [t for t in study.trials if "retry_of" in t.user_attrs]
    assert {t.state for t in study.trials} == {TrialState.COMPLETE, TrialState.FAIL}
    # the grid handed out the search's trials only
    assert all(("grid_id" in t.system_attrs) == (trial_phase(t) == "search") for t in study.trials)
    info = store.get_job(job.id)
    assert [(p.name, p.failed > 0) for p in info.phases] == [
        ("search", False),
        ("confirm", True),
        ("ablate", True),
    ]
    assert all(p.done + p.failed == p.total for p in info.phases[1:])
    assert info.plan is not None
    skipped = info.plan["ablate"]["skipped"]
    assert [(s["stage"], s["value"]) for s in skipped] == [
        (1, "avg"),
        (1, "conv"),
        (2, "avg"),
        (2, "conv"),
    ]
    assert skipped[0]["reason"] == "the space excludes downsample avg at stage 1"


# --------------------------------------------------------------------------- planning, no Ray


def _searched(
    tmp_path: Path, config: JobConfig, results: list[float | None]
) -> tuple[Store, int, str]:
    """A job whose search phase ended: one trial per entry of ``results`` (its val_acc, or
    ``None``: failed), on the first architectures of the space, with their rows."""
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    store = Store.open(url, create=True)
    job = store.submit(config)
    assert store.claim("w", 600, job_id=job.id) is not None
    job_study = open_study(storage=optuna_storage(url), name=job.study_name, config=config)
    names = config.space.distributions()
    for arch, acc in zip(config.space, results, strict=False):
        job_study.study.enqueue_trial({k: v for k, v in arch.params().items() if k in names})
        trial = job_study.study.ask()
        config.space.sample(trial)
        seed = replicate_seed(config.seed, 0)
        cost = arch_cost(arch, input_shape=(1, 8, 8))
        attrs = {"phase": "search", "replicate": 0, "seed": seed, "arch_hash": arch.hash()}
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        cid = store.start_candidate(
            job_id=job.id,
            trial_number=trial.number,
            optuna_trial_id=job_study.trial_id(trial.number),
            arch=arch,
            cost=cost,
            seed=seed,
            attempt=1,
            worker_id="w",
            epochs_total=1,
        )
        if acc is None:
            job_study.study.tell(trial, state=TrialState.FAIL)
            store.finish_candidate(candidate_id=cid, state="failed", error="boom")
        else:
            trial.set_user_attr("val_acc", acc)
            job_study.study.tell(trial, [acc, float(cost.flops)])
            store.finish_candidate(candidate_id=cid, state="complete", val_acc=acc, epochs_done=1)
    return store, job.id, url


def _searcher(store: Store, job_id: int, url: str) -> StudySearcher:
    """A searcher as a new attempt of the job builds it (nothing trains here)."""
    job = store.get_job(job_id)
    job_study = open_study(storage=optuna_storage(url), name=job.study_name, config=job.config)
    recorder = Recorder(
        study=job_study,
        store=store,
        job_id=job_id,
        attempt=2,
        worker_id="w",
        epochs_total=1,
        num_classes=10,
        input_shape=(1, 8, 8),
        weights_dir=None,
        keep_weights="none",
    )
    return StudySearcher(
        study=job_study,
        config=job.config,
        num_classes=10,
        input_shape=(1, 8, 8),
        stop=StopRequest(),
        store=store,
        job_id=job_id,
        recorder=recorder,
        cache_key=lambda arch, seed: f"{arch.hash()}/{seed}",
    )


def _planning_config(**kw: Any) -> JobConfig:
    space = {"stages": 2, "widths": [4, 8], "kernel": [3], "skip": ["none"]}
    return small_config(trials=3, cache=False, space=space, **kw)


def test_planning_again_after_a_crash_part_way_enqueues_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two equal architectures and a cheaper, less accurate one: all three on the front
    store, job_id, url = _searched(tmp_path, _planning_config(seeds=4), [0.6, 0.6, 0.5])
    crashing = _searcher(store, job_id, url)
    enqueue = crashing.plain.enqueue_trial
    calls = iter(range(100))

    def crash_after_two(*args: Any, **kw: Any) -> None:
        if next(calls) == 2:
            raise RuntimeError("worker died while planning")
        enqueue(*args, **kw)

    monkeypatch.setattr(crashing.plain, "enqueue_trial", crash_after_two)
    with pytest.raises(RuntimeError, match="worker died while planning"):
        crashing.settle()
    assert store.get_job(job_id).plan is None

    def confirm_trainings() -> list[tuple[str, int]]:
        trials = optuna.load_study(
            study_name=store.get_job(job_id).study_name, storage=optuna_storage(url)
        ).trials
        return [_training(t) for t in trials if trial_phase(t) == "confirm"]

    assert len(confirm_trainings()) == 2
    # the next attempt plans the rest, and one after it (the plan recorded) nothing more
    for _ in range(2):
        assert _searcher(store, job_id, url).settle() is False  # a confirm trial to train
        planned = confirm_trainings()
        assert len(planned) == len(set(planned)) == 3 * 3
        assert store.get_job(job_id).plan == {"confirm": {"total": 9}}


def test_a_reference_trial_that_is_not_complete_plans_no_ablation(tmp_path: Path) -> None:
    store, job_id, url = _searched(
        tmp_path, _planning_config(ablate="downsample", reference=1), [0.5, None, 0.6, 0.4]
    )
    assert _searcher(store, job_id, url).settle() is True  # nothing to train: the job is done
    assert store.get_job(job_id).plan == {
        "ablate": {
            "total": 0,
            "references": [],
            "skipped": [],
            "reason": f"reference trial 1 is not a complete trial of job {job_id}",
        }
    }
