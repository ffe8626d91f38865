"""Database failures reach callers as the store's own errors: one line, chained, retried."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from search.config import JobConfig
from search.store import (
    DatabaseError,
    DatabaseUnavailableError,
    Store,
    StoreError,
    current_revision,
    db_errors,
    make_engine,
    retrying,
    upgrade,
)

# Nothing listens on port 9 (discard): connecting is refused at once.
NOWHERE = "postgresql://nobody:secret@127.0.0.1:9/none"
SHOWN = "postgresql+psycopg://nobody:***@127.0.0.1:9/none"


def test_an_unreachable_server_is_a_one_line_unavailable_error() -> None:
    store = Store(NOWHERE)
    with pytest.raises(DatabaseUnavailableError) as caught:
        store.list_jobs()
    store.close()
    message = str(caught.value)
    assert message.startswith(f"database {SHOWN}: connection failed: ")
    assert "\n" not in message and "secret" not in message
    assert isinstance(caught.value.__cause__, sa_exc.OperationalError)
    assert isinstance(caught.value, StoreError)  # what the CLI and the dashboard handle
    assert isinstance(caught.value, db_errors())


def test_the_schema_functions_raise_the_same_error() -> None:
    engine = make_engine(NOWHERE)
    with pytest.raises(DatabaseUnavailableError, match=r"^database postgresql\+psycopg://"):
        current_revision(engine)
    engine.dispose()
    with pytest.raises(DatabaseUnavailableError, match="connection failed"):
        upgrade(NOWHERE)


def test_a_refused_statement_is_a_database_error_and_rolls_back(store: Store) -> None:
    job = store.submit(JobConfig.from_mapping({"trials": 1, "epochs": 1}))
    with pytest.raises(DatabaseError) as caught, store.session(write=True) as s:
        s.execute(text("UPDATE ps_jobs SET trials_total = 5"))
        s.execute(text("UPDATE ps_jobs SET status = 'bogus'"))  # the CHECK constraint refuses
    assert type(caught.value) is DatabaseError  # a broken rule, not a lost connection
    assert isinstance(caught.value.__cause__, sa_exc.IntegrityError)
    shown = store.engine.url.render_as_string(hide_password=True)
    assert str(caught.value).startswith(f"database {shown}: ")
    assert "\n" not in str(caught.value) and "ck_ps_jobs_status" in str(caught.value)
    assert store.get_job(job.id).trials_total == 1


def test_validation_errors_inside_a_session_stay_value_errors(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown candidate state 'bogus'"):
        store.list_candidates(1, state="bogus")
    with pytest.raises(LookupError, match="no candidate 7"):
        store.finish_candidate(candidate_id=7, state="complete")


def test_retrying_retries_the_unavailable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DatabaseUnavailableError("database x: connection failed")
        return "done"

    assert retrying(flaky) == "done" and len(calls) == 3

    refused = []

    def broken() -> None:
        refused.append(1)
        if len(refused) > 1:  # fail now, not after RETRY_S of retries with sleep patched out
            pytest.fail("retrying called again after a DatabaseError")
        raise DatabaseError("database x: constraint failed")

    with pytest.raises(DatabaseError, match="constraint failed"):
        retrying(broken)
    assert len(refused) == 1  # not worth retrying: raised at the first call
