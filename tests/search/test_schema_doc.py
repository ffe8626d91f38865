"""docs/schema.md cannot rot: its column tables are the models', and its SQL and pandas
examples run against a real database (SQLite and PostgreSQL) with Optuna's tables filled."""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna
import pandas as pd
from _known import ROWS, fill
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial
from sqlalchemy import text, update

from search.space import DOWNSAMPLES, KERNELS, SKIPS
from search.store import Store, normalize_url, optuna_storage
from search.store._models import Base, Candidate

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
BEGIN, END = "<!-- BEGIN GENERATED TABLES -->", "<!-- END GENERATED TABLES -->"
TABLE_ORDER = ("ps_jobs", "ps_candidates", "ps_stages", "ps_epochs", "ps_workers")


def generated_tables() -> str:
    """The markdown that describes every poolstride table, from the SQLAlchemy models."""
    models = {m.class_.__tablename__: m.class_ for m in Base.registry.mappers}
    assert set(models) == set(TABLE_ORDER), "a new table needs a place in the doc"
    parts = []
    for name in TABLE_ORDER:
        table = Base.metadata.tables[name]
        summary = (models[name].__doc__ or "").strip().splitlines()[0]
        parts += [
            f"### `{name}`",
            "",
            summary,
            "",
            "| column | type | null | key |",
            "|---|---|---|---|",
        ]
        for col in table.columns:
            keys = []
            if col.primary_key:
                keys.append("primary key")
            keys += [f"→ `{fk.column.table.name}.{fk.column.name}`" for fk in col.foreign_keys]
            ctype = getattr(col.type, "impl", col.type)
            parts.append(
                f"| `{col.name}` | {str(ctype).lower()} | "
                f"{'yes' if col.nullable else 'no'} | {', '.join(keys)} |"
            )
        indexes = sorted(
            ", ".join(c.name for c in ix.columns) or str(ix.expressions) for ix in table.indexes
        )
        uniques = sorted(
            ", ".join(c.name for c in uc.columns)
            for uc in table.constraints
            if type(uc).__name__ == "UniqueConstraint"
        )
        if indexes:
            parts += ["", "Indexes: " + "; ".join(f"({i})" for i in indexes) + "."]
        if uniques:
            parts += ["", "Unique: " + "; ".join(f"({u})" for u in uniques) + "."]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def test_doc_tables_are_the_models() -> None:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    fresh = "\n" + generated_tables()
    if os.environ.get("POOLSTRIDE_REGEN_DOCS"):
        DOC.write_text(doc[:start] + fresh + doc[end:])
        doc = DOC.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    assert doc[start:end] == fresh, "run POOLSTRIDE_REGEN_DOCS=1 pytest " + __file__


def _with_optuna_study(store: Store, url: str) -> int:
    """The known rows, plus the Optuna study behind them (so the joins have rows)."""
    job_id = fill(store)
    job = store.get_job(job_id)
    storage = optuna_storage(url)
    study = optuna.create_study(
        study_name=job.study_name, storage=storage, directions=["maximize", "minimize"]
    )
    study_id = storage.get_study_id_from_name(job.study_name)
    choices = {"downsample": DOWNSAMPLES, "kernel": KERNELS, "skip": SKIPS}
    dists = {
        f"s{i}.{k}": CategoricalDistribution(list(v)) for i in (1, 2) for k, v in choices.items()
    }
    for trial, s1, s2, val, flops, _ in ROWS:
        params = {
            f"s{i}.{k}": v
            for i, st in ((1, s1), (2, s2))
            for k, v in zip(("downsample", "kernel", "skip"), st, strict=True)
        }
        study.add_trial(
            create_trial(
                params=params,
                distributions=dists,
                values=None if val is None else [val, flops],
                state=(
                    optuna.trial.TrialState.FAIL
                    if val is None
                    else optuna.trial.TrialState.COMPLETE
                ),
            )
        )
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial)
        with store.session(write=True) as s:
            s.execute(
                update(Candidate)
                .where(Candidate.job_id == job_id, Candidate.trial_number == trial)
                .values(optuna_trial_id=trial_id)
            )
    return job_id


def test_doc_sql_examples_run(store: Store, db_url: str) -> None:
    assert _with_optuna_study(store, db_url) == 1  # the examples name job 1
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 4
    with store.engine.connect() as conn:
        results = [conn.execute(text(sql)).mappings().all() for sql in blocks]
    per_downsample = {r["downsample"]: (r["n"], r["mean_val_acc"]) for r in results[0]}
    assert per_downsample["avg"][0] == 1 and per_downsample["conv"][0] == 1
    assert per_downsample["max"][0] == 5  # trials 0, 1, 2, 3, 7 (6 failed)
    assert [r["trial_number"] for r in results[1]] == [3, 1]
    joined = results[2]
    assert {r["trial_number"] for r in joined} == {t[0] for t in ROWS}
    assert all(r["trial_number"] == r["optuna_number"] for r in joined)
    values = {(r["trial_number"], r["objective"]): r["value"] for r in joined}
    assert values[(1, 0)] == 0.82 and values[(1, 1)] == 60
    assert results[3] == []  # the hand-made candidates have no curves


def test_doc_pandas_examples_run(store: Store, db_url: str) -> None:
    _with_optuna_study(store, db_url)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 2
    plain: dict[str, object] = {"DB_URL": normalize_url(db_url)}
    exec(blocks[0], plain)
    per_choice = plain["per_choice"]
    assert isinstance(per_choice, pd.DataFrame)
    assert per_choice.loc["max", "count"] == 5
    assert list(plain["table"].columns[:3]) == ["id", "trial_number", "state"]  # type: ignore[attr-defined]
    ours: dict[str, object] = {"DB_URL": db_url}
    exec(blocks[1], ours)
    assert ours["front"].rows["trial"].tolist() == [5, 3, 1]  # type: ignore[attr-defined]
    assert ours["frame"]["s2.downsample"].tolist() == ["conv", "avg"]  # type: ignore[index]
