"""search.study's recovery on a real SQLite study and store: no Ray, no training."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.config import JobConfig
from search.cost import Cost
from search.space import ArchSpec
from search.store import Store, optuna_storage
from search.study import LOST, RETRY_OF, open_study

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
