"""The dashboard never changes the database file: on a SQLite file in rollback-journal mode its
data layer and its pages read every job, worker and candidate and leave the file's bytes, its
journal mode and its folder as they were."""

from __future__ import annotations

import hashlib
import itertools
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import _data
from search.config import JobConfig
from search.cost import arch_cost
from search.store import DatabaseError, Store, head_revision

CONFIG = JobConfig.from_mapping(
    {"dataset": "digits", "trials": 4, "epochs": 1, "space": {"stages": 2, "widths": [8, 16]}}
)
COMPLETE = 3


@pytest.fixture
def journal_url(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    """A SQLite file in rollback-journal mode (``DELETE``) with one job of :data:`COMPLETE`
    complete candidates."""
    path = tmp_path / "poolstride.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        job = store.submit(CONFIG)
        for trial, arch in enumerate(itertools.islice(CONFIG.space, COMPLETE)):
            cid = store.start_candidate(
                job_id=job.id,
                trial_number=trial,
                optuna_trial_id=None,
                arch=arch,
                cost=arch_cost(arch, input_shape=CONFIG.space.input_shape),
                seed=0,
                attempt=1,
                worker_id=None,
                epochs_total=1,
            )
            store.finish_candidate(candidate_id=cid, state="complete", val_acc=0.5, train_s=0.1)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    # Streamlit's caches outlive a test: start and end with none, and no pooled connection.
    st.cache_data.clear()
    st.cache_resource.clear()
    yield url
    _data.store(url).close()
    st.cache_data.clear()
    st.cache_resource.clear()


def _path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _file_state(path: Path) -> tuple[str, str, list[str]]:
    """The file's hash, its journal mode (asked read-only) and what its folder holds."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    return digest, mode, sorted(p.name for p in path.parent.iterdir())


def test_the_data_layer_reads_and_leaves_the_file_as_it_is(journal_url: str) -> None:
    before = _file_state(_path(journal_url))
    assert before[1:] == ("delete", [_path(journal_url).name])

    assert _data.check(journal_url) == head_revision()
    [job] = _data.jobs(journal_url)
    assert job.trials_done == COMPLETE
    assert _data.workers(journal_url) == []
    frame = _data.candidates(journal_url, job.id, _data.version(job), where=("state=complete",))
    assert len(frame) == COMPLETE
    with pytest.raises(DatabaseError, match="readonly"):
        _data.store(journal_url).submit(CONFIG)

    assert _file_state(_path(journal_url)) == before


def test_the_pages_leave_the_file_as_it_is(
    journal_url: str, open_page: Callable[..., AppTest]
) -> None:
    before = _file_state(_path(journal_url))
    jobs = open_page(journal_url).dataframe[0].value
    assert jobs["trials"].tolist() == [f"{COMPLETE}/{CONFIG.trials}"]
    trials = open_page(journal_url, "trials.py")
    assert len(trials.dataframe[0].value) == COMPLETE
    assert _file_state(_path(journal_url)) == before
