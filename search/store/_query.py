"""The store's reads of candidates: the ``--where`` filter grammar, and frames and rows.

The frames of candidates, stages and epochs and the candidate rows are read here; the
:class:`~search.store.Store` keeps its other SELECTs (a job's progress count, the rows a write
locks) beside the writes they serve. The public faces are :mod:`search.query` (the filtered
frames and the front), :mod:`search.store` (:func:`epochs_frame`) and
:meth:`~search.store.Store.list_candidates`.

A filter is ``KEY=VALUE``, ``KEY!=VALUE``, ``KEY<N``, ``KEY<=N``, ``KEY>N`` or ``KEY>=N``;
several filters mean AND. Keys are

- the stage parameters ``sN.downsample``, ``sN.kernel``, ``sN.skip``, ``sN.width``,
  ``sN.depth`` (``N`` from 1), answered from the indexed ``ps_stages`` table;
- the candidate columns ``trial`` (the Optuna trial number), ``state``, ``phase``,
  ``val_acc``, ``test_acc``, ``flops``, ``params``, ``activation_bytes``,
  ``receptive_field``, ``latency_ms``, ``train_s``, ``latency_rel``, ``epochs_done``,
  ``replicate``, ``seed``, ``reference``, ``cached_from`` (``cached_from>0``: the results the
  cache served), ``gpu_share`` and ``stopped_at`` (``stopped_at>0``: the candidates early
  stopping stopped).

Filters are parsed into :class:`Condition` objects whose values are checked against the key
(a number for numeric keys, within the column's range for integer ones, one of the allowed
words for ``state``, ``phase``, ``downsample`` and ``skip``) and then become bound parameters of a
SQLAlchemy expression: no user text is ever pasted into SQL. Every refusal starts with the
``--where '…'`` (or ``--sort '…'``) it refers to. Sorting and ``limit`` run in the database
too, so ``--limit 50`` loads 50 rows.

Nothing here renders; the CLI and the dashboard format the DataFrames.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy import ColumnElement, Connection, Executable, Select, and_, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, aliased

from search.store._models import Base, Candidate, Epoch, Stage, column_bounds
from search.vocabulary import (
    CANDIDATE_STATES,
    DOWNSAMPLES,
    METRICS,
    PHASES,
    SKIPS,
    STAGE_KEYS,
    CandidateState,
)

if TYPE_CHECKING:
    import pandas as pd

    from search.store._store import Store

__all__ = [
    "CANDIDATE_KEYS",
    "OPERATORS",
    "Condition",
    "Front",
    "count_candidates",
    "epochs_frame",
    "load_candidates",
    "load_front",
    "output_columns",
    "parse_sort",
    "parse_where",
    "stage_columns",
]

Operator = Literal["=", "!=", "<", "<=", ">", ">="]
OPERATORS: tuple[Operator, ...] = ("=", "!=", "<", "<=", ">", ">=")


_CANDIDATE_COLUMNS = Base.metadata.tables[Candidate.__tablename__].columns

# which training of an architecture a candidate is: its replicate and seed, the reference
# trial an ablation varies,
# the candidate a cached result was copied from, the GPU share it ran with, the epoch early
# stopping stopped it at
_RUN_COLUMNS = ("replicate", "seed", "reference", "cached_from", "gpu_share", "stopped_at")
# filter/sort key -> ps_candidates column: trial, state and phase, then every metric and
# epochs_done in the table's column order (the order the unknown-key message lists them in),
# then the run columns
CANDIDATE_KEYS: dict[str, str] = {
    "trial": "trial_number",
    "state": "state",
    "phase": "phase",
    **{c.name: c.name for c in _CANDIDATE_COLUMNS if c.name in (*METRICS, "epochs_done")},
    **{name: name for name in _RUN_COLUMNS},
}

# words allowed for the non-numeric keys; everything else is numeric
_WORDS: dict[str, tuple[str, ...]] = {
    "state": CANDIDATE_STATES,
    "phase": PHASES,
    "downsample": DOWNSAMPLES,
    "skip": SKIPS,
}

_GRAMMAR = "KEY=VALUE, KEY!=VALUE, KEY<N, KEY<=N, KEY>N or KEY>=N"
_EXPR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(!=|<=|>=|=|<|>)\s*(\S(?:.*\S)?)\s*")
_INTEGER = re.compile(r"[+-]?\d+")
_STAGE_KEY = re.compile(r"s([1-9][0-9]*)\.(\w+)")
# the metrics that are NULL until measured (a failed candidate has no val_acc)
_NULLABLE_METRICS = tuple(m for m in METRICS if _CANDIDATE_COLUMNS[m].nullable)
_INT_STAGE_KEYS = ("kernel", "width", "depth")
# the integer columns that are NULL where they do not apply (a search row has no reference)
_NULLABLE_INTEGERS = tuple(
    c
    for c in _RUN_COLUMNS
    if _CANDIDATE_COLUMNS[c].nullable and _CANDIDATE_COLUMNS[c].type.python_type is int
)
_EXTRA_COLUMNS = ("candidate_id", "arch_hash", "epochs_done")


@dataclass(frozen=True)
class Condition:
    """One parsed filter: ``key op value``, with ``value`` already typed for ``key``.

    ``stage`` is the stage number for stage keys (``s2.kernel`` → 2, ``field`` ``"kernel"``)
    and ``None`` for candidate keys (``field`` is then the key itself). ``expr`` is the text it
    was parsed from, which a refusal quotes (by default ``key``, ``op`` and ``value`` run
    together); it takes no part in comparisons.

    Example:
        >>> parse_where("s2.kernel>=5")
        Condition(key='s2.kernel', op='>=', value=5, stage=2, field='kernel')
        >>> Condition("trial", "<", 3, None, "trial").expr
        'trial<3'
    """

    key: str
    op: Operator
    value: str | int | float
    stage: int | None
    field: str
    expr: str = dataclasses.field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.expr:
            object.__setattr__(self, "expr", f"{self.key}{self.op}{self.value}")


def parse_where(expr: str) -> Condition:
    """Parse one ``--where`` expression into a :class:`Condition`.

    Raises:
        ValueError: one line, starting with ``--where '…'``, saying what was expected: the
            grammar, the known keys, a number for a numeric key (within the range of its
            column for an integer key), or the allowed words for ``state``, ``downsample`` and
            ``skip``.

    Example:
        >>> parse_where("s1.downsample=max").value
        'max'
        >>> parse_where("val_acc>0.9")
        Condition(key='val_acc', op='>', value=0.9, stage=None, field='val_acc')
    """
    m = _EXPR.fullmatch(expr)
    if not m:
        raise ValueError(f"--where {expr!r}: expected {_GRAMMAR}")
    key, op, raw = m.group(1), m.group(2), m.group(3)
    stage, field = _split_key(key, expr)
    words = _WORDS.get(field)
    value: str | int | float
    if words is not None:
        if op not in ("=", "!="):
            raise ValueError(f"--where {expr!r}: {key} takes = or != only")
        if raw not in words:
            raise ValueError(f"--where {expr!r}: {key} is one of {', '.join(words)}")
        value = raw
    else:
        value = _number(raw, key, expr, _column(stage, field))
    return Condition(key, op, value, stage, field, expr)  # type: ignore[arg-type]


def parse_sort(key: str) -> tuple[str, bool]:
    """Parse a sort key: ``KEY`` (ascending) or ``-KEY`` (descending); any filter key works.

    Returns:
        The key and whether the order is descending.

    Example:
        >>> parse_sort("-val_acc"), parse_sort("s1.kernel")
        (('val_acc', True), ('s1.kernel', False))
    """
    text = key.strip()
    descending = text.startswith("-")
    name = text.lstrip("-").strip()
    _split_key(name, key, what="--sort")
    return name, descending


def stage_columns(n_stages: int) -> list[str]:
    """The flat stage columns of ``n_stages`` stages, in order.

    Example:
        >>> stage_columns(1)
        ['s1.downsample', 's1.kernel', 's1.skip', 's1.width', 's1.depth']
    """
    return [f"s{i}.{k}" for i in range(1, n_stages + 1) for k in STAGE_KEYS]


def output_columns(n_stages: int) -> list[str]:
    """The columns of a candidate row: trial, state, stage parameters, metrics and costs,
    then which training it is (phase, replicate, seed, the reference an ablation varies, the
    candidate a cached result came from, the GPU share it ran with, the epoch early stopping
    stopped it at).

    Example:
        >>> output_columns(1)[:3]
        ['trial', 'state', 's1.downsample']
        >>> output_columns(1)[-7:]
        ['phase', 'replicate', 'seed', 'reference', 'cached_from', 'gpu_share', 'stopped_at']
    """
    return ["trial", "state", *stage_columns(n_stages), *METRICS, "phase", *_RUN_COLUMNS]


def load_candidates(
    store: Store,
    job_id: int,
    *,
    where: Iterable[str | Condition] = (),
    sort: str | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    trials: Collection[int] | None = None,
) -> pd.DataFrame:
    """The job's candidates as a DataFrame, filtered, sorted and limited in the database.

    Args:
        store: An open store.
        job_id: The job (``JobNotFoundError`` if there is none).
        where: Filters (strings in the ``--where`` grammar, or parsed :class:`Condition` s),
            combined with AND.
        sort: ``KEY`` or ``-KEY`` (descending); default the trial number. Missing values sort
            last either way.
        limit: At most this many rows (after filtering and sorting).
        columns: Only these columns (plus ``candidate_id`` and ``trial``, always present);
            default :func:`output_columns` plus ``candidate_id``, then ``phase``,
            ``replicate``, ``seed``, ``reference``, ``cached_from``, ``arch_hash`` and
            ``epochs_done``. Asking for no stage column skips the ``ps_stages`` read.
        trials: Only these trial numbers.

    Returns:
        One row per candidate. Stage columns hold strings (``downsample``, ``skip``) and
        integers; metrics not measured (a failed candidate's ``val_acc``) are NaN, and so are
        ``reference``, ``cached_from``, ``gpu_share`` and ``stopped_at`` where they do not
        apply.

    Raises:
        ValueError: a malformed filter or sort key, a stage the job does not have, a negative
            limit or an unknown column.

    Example:
        >>> df = load_candidates(store, 1, where=["s1.downsample=max", "val_acc>0.9"],
        ...                      sort="-val_acc", limit=50)  # doctest: +SKIP
    """
    import pandas as pd  # frames only here: keeps `import search.query` cheap for the CLI

    conditions = _conditions(where)
    if limit is not None and limit < 0:
        raise ValueError(f"--limit {limit} must not be negative")
    n_stages = _stages_of(store, job_id, conditions)
    wanted = _wanted_columns(columns, n_stages)

    cand_cols = [k for k in wanted if k in CANDIDATE_KEYS or k in _EXTRA_COLUMNS]
    selected = [Candidate.id.label("candidate_id"), Candidate.trial_number.label("trial")]
    selected += [
        getattr(Candidate, _column_of(k)).label(k)
        for k in cand_cols
        if k not in ("candidate_id", "trial")
    ]
    query = select(*selected).where(Candidate.job_id == job_id, *(_clause(c) for c in conditions))
    if trials is not None:
        query = query.where(Candidate.trial_number.in_(sorted({int(t) for t in trials})))
    query = query.order_by(*_order(sort, n_stages)).limit(limit)

    stage_wanted = [k for k in wanted if _STAGE_KEY.fullmatch(k)]
    with store.session() as s:
        conn = s.connection()  # Core rows: the ORM's per-row work would dominate at 100k rows
        frame = _frame(conn, query)
        if stage_wanted and len(frame):
            stages = _stage_frame(
                conn,
                job_id,
                frame["candidate_id"],
                limited=limit is not None or trials is not None or bool(conditions),
                n=len(frame),
            )
            frame = frame.merge(stages, how="left", left_on="candidate_id", right_index=True)
    for key in stage_wanted:
        if key not in frame.columns:
            frame[key] = pd.Series(dtype=object)
        elif key.rsplit(".", 1)[1] in _INT_STAGE_KEYS:
            # the pivot mixes strings and integers into object columns; give numbers back
            frame[key] = _integers(frame[key])
    for key in _NULLABLE_INTEGERS:
        if key in frame.columns:
            frame[key] = _integers(frame[key])
    for key in _NULLABLE_METRICS:
        if key in frame.columns:  # None (not measured) becomes NaN, the column float64
            frame[key] = pd.to_numeric(frame[key]).astype("float64")
    return frame[[k for k in wanted]].reset_index(drop=True)


@dataclass(frozen=True)
class Front:
    """A job's Pareto front of architectures: the rows of its members (each architecture's
    results averaged over its seeds, :func:`search.pareto.architecture_means`) and the
    hypervolume of the front.

    Attributes:
        objectives: The objectives the front is over.
        rows: The front's architectures as :func:`load_candidates` rows of their lowest trial,
            with the measured metrics replaced by their means over seeds, plus ``n``,
            ``{metric}_std``, ``trials`` and ``on_front`` (``True``), best first by the first
            objective (:func:`search.pareto.pareto_front`); then, with ``on_front`` ``False``,
            the architectures that were on the front of the first seed's results
            (replicate 0) but whose mean fell off it.
        hypervolume: :func:`search.pareto.hypervolume` of every complete architecture's means.
        complete: How many complete candidates the front was chosen from.
        architectures: How many distinct architectures those candidates are.
    """

    objectives: tuple[str, ...]
    rows: pd.DataFrame
    hypervolume: float
    complete: int
    architectures: int

    @property
    def members(self) -> pd.DataFrame:
        """The rows on the front (``on_front``), without the architectures that fell off it."""
        return self.rows[self.rows["on_front"].to_numpy(dtype=bool)]


def count_candidates(store: Store, job_id: int, *, where: Iterable[str | Condition] = ()) -> int:
    """How many of the job's candidates match ``where`` (:func:`load_candidates`'s filters),
    counted in the database with ``COUNT(*)``.

    Example:
        >>> count_candidates(store, 1, where=["s2.downsample=max"])  # doctest: +SKIP
        4
    """
    conditions = _conditions(where)
    _stages_of(store, job_id, conditions)
    query = (
        select(func.count())
        .select_from(Candidate)
        .where(Candidate.job_id == job_id, *(_clause(c) for c in conditions))
    )
    with store.session() as s:
        return int(s.scalar(query) or 0)


def load_front(store: Store, job_id: int, objectives: Sequence[str] | None = None) -> Front:
    """The Pareto front of the job's complete architectures over ``objectives`` (default: the
    job's own), each architecture's results averaged over its seeds.

    One narrow query of the objectives of every complete candidate chooses the front; the
    full rows are read for the trials of the front's architectures (and of those that fell off
    it) only. A job that trained each architecture once has the front of its candidates.

    Raises:
        ValueError: an unknown objective.

    Example:
        >>> front = load_front(store, 1, ["val_acc", "params"])  # doctest: +SKIP
        >>> len(front.members), round(front.hypervolume, 3)  # doctest: +SKIP
        (6, 0.912)
    """
    from search.objectives import validate_objectives
    from search.pareto import architecture_front, architecture_means, hypervolume

    names = validate_objectives(objectives or store.get_job(job_id).config.objectives)
    narrow = load_candidates(
        store,
        job_id,
        where=["state=complete"],
        columns=list(dict.fromkeys([*names, "arch_hash", "seed", "replicate", "phase"])),
    )
    means = architecture_means(narrow, names)
    # what the search found, before confirm and ablate trained more seeds and variants: an
    # ablation variant whose first seed was lucky never was a member to fall off
    first = (narrow["phase"] == "search") & (narrow["replicate"] == 0)
    chosen = architecture_front(
        means, names, first_seed=None if first.all() else architecture_means(narrow[first], names)
    )
    # every measured metric of the chosen architectures: their full rows, all their seeds
    wanted = [t for trials in chosen["trials"] for t in trials]
    rows = architecture_means(
        load_candidates(store, job_id, where=["state=complete"], trials=wanted), names
    )
    place = {h: i for i, h in enumerate(chosen["arch_hash"])}
    rows = rows.sort_values("arch_hash", key=lambda s: s.map(place)).reset_index(drop=True)
    on_front = chosen.loc[chosen["on_front"].to_numpy(dtype=bool), "arch_hash"]
    rows["on_front"] = rows["arch_hash"].isin(on_front).to_numpy(dtype=bool)
    return Front(
        tuple(names),
        rows,
        hypervolume(means, names),
        int(narrow[list(names)].notna().all(axis=1).sum()),
        len(means),
    )


def epochs_frame(
    store: Store, job_id: int, *, trials: Collection[int] | None = None
) -> pd.DataFrame:
    """The job's learning-curve points: trial number, epoch, val_acc, loss, seconds.

    ``trials`` reads only those trial numbers' curves (a page that draws five curves reads
    five).

    Example:
        >>> epochs_frame(store, 1).pivot(index="epoch", columns="trial_number",
        ...                              values="val_acc")  # doctest: +SKIP
    """
    import pandas as pd

    query = (
        select(
            Epoch.candidate_id,
            Candidate.trial_number,
            Epoch.epoch,
            Epoch.val_acc,
            Epoch.train_loss,
            Epoch.seconds,
        )
        .join(Candidate, Candidate.id == Epoch.candidate_id)
        .where(Candidate.job_id == job_id)
        .order_by(Candidate.trial_number, Epoch.epoch)
    )
    if trials is not None:
        query = query.where(Candidate.trial_number.in_(sorted({int(t) for t in trials})))
    with store.session() as s:
        result = s.execute(query)
        return pd.DataFrame.from_records(result.all(), columns=list(result.keys()))


# --------------------------------------------------------------------------- internals


def _split_key(key: str, expr: str, *, what: str = "--where") -> tuple[int | None, str]:
    if key in CANDIDATE_KEYS:
        return None, key
    m = _STAGE_KEY.fullmatch(key)
    if m and m.group(2) in STAGE_KEYS:
        return int(m.group(1)), m.group(2)
    raise ValueError(
        f"{what} {expr!r}: unknown key {key!r} (expected sN.downsample, sN.kernel, "
        f"sN.skip, sN.width, sN.depth or one of {', '.join(CANDIDATE_KEYS)})"
    )


def _number(raw: str, key: str, expr: str, column: InstrumentedAttribute[Any]) -> int | float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"--where {expr!r}: {key} needs a number, got {raw!r}")
    bounds = column_bounds(column.type)
    if bounds is None:
        # a float column: an integer beyond 64 bits would not bind on SQLite
        return value
    number = int(raw) if _INTEGER.fullmatch(raw) else value
    if not bounds.lo <= number <= bounds.hi:
        # no row can hold it, and past 64 bits SQLite cannot even bind it where PostgreSQL
        # answers: refused alike on both
        raise ValueError(
            f"--where {expr!r}: {raw} is beyond the range of {key} ({bounds.lo} to {bounds.hi})"
        )
    return number


def _column(stage: int | None, field: str) -> InstrumentedAttribute[Any]:
    """The column a (parsed) filter or sort key reads: a candidate column, or one of
    ``ps_stages``'."""
    column: InstrumentedAttribute[Any] = (
        getattr(Candidate, CANDIDATE_KEYS[field]) if stage is None else getattr(Stage, field)
    )
    return column


def _conditions(where: Iterable[str | Condition]) -> list[Condition]:
    return [c if isinstance(c, Condition) else parse_where(c) for c in where]


def _stages_of(store: Store, job_id: int, conditions: Iterable[Condition]) -> int:
    """The job's stage count (``JobNotFoundError`` if there is no such job), once every
    condition's stage is checked against it."""
    n_stages = len(store.get_job(job_id).config.space.stages)
    for c in conditions:
        _check_stage(c.stage, n_stages, f"--where {c.expr!r}")
    return n_stages


def _check_stage(stage: int | None, n_stages: int, what: str) -> None:
    if stage is not None and stage > n_stages:
        raise ValueError(f"{what}: the job has {n_stages} stage{'s' * (n_stages != 1)}")


def _column_of(key: str) -> str:
    return CANDIDATE_KEYS.get(key, "id" if key == "candidate_id" else key)


def _compare(column: Any, op: Operator, value: object) -> ColumnElement[bool]:
    # the value is bound as a parameter by SQLAlchemy's operators, never formatted into SQL
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    return column >= value


def _clause(c: Condition) -> ColumnElement[bool]:
    column = _column(c.stage, c.field)
    if c.stage is None:
        return _compare(column, c.op, c.value)
    # EXISTS on the (candidate_id, stage) primary key: one index probe per candidate
    return exists().where(
        Stage.candidate_id == Candidate.id,
        Stage.stage == c.stage,
        _compare(column, c.op, c.value),
    )


def _order(sort: str | None, n_stages: int) -> list[Any]:
    if sort is None:
        return [Candidate.trial_number]
    key, descending = parse_sort(sort)
    stage, field = _split_key(key, sort, what="--sort")
    _check_stage(stage, n_stages, f"--sort {sort!r}")
    column: Any
    if stage is None:
        column = _column(stage, field)
    else:
        alias = aliased(Stage)
        column = (
            select(getattr(alias, field))
            .where(alias.candidate_id == Candidate.id, alias.stage == stage)
            .scalar_subquery()
        )
    ordered = column.desc() if descending else column.asc()
    return [ordered.nulls_last(), Candidate.trial_number]


def _wanted_columns(columns: Sequence[str] | None, n_stages: int) -> list[str]:
    default = [
        "candidate_id",
        *output_columns(n_stages),
        "arch_hash",
        "epochs_done",
    ]
    if columns is None:
        return default
    known = set(default)
    for key in columns:
        if key not in known:
            raise ValueError(f"unknown column {key!r} (expected one of {', '.join(default)})")
    return ["candidate_id", "trial", *(k for k in columns if k not in ("candidate_id", "trial"))]


def _integers(column: pd.Series) -> pd.Series:
    """``column`` as numbers: int64 when it has no missing value, else float64 with NaN."""
    import pandas as pd

    numbers = pd.to_numeric(column)
    return numbers.astype("int64") if numbers.notna().all() else numbers.astype("float64")


def _rows(conn: Connection, query: Executable) -> tuple[list[str], Sequence[Sequence[Any]]]:
    """The column names and plain row tuples of ``query``."""
    result = conn.execute(query)
    keys = list(result.keys())
    if conn.dialect.name != "sqlite":
        return keys, result.fetchall()
    # pysqlite already returns the Python values SQLAlchemy would (the INTEGER, VARCHAR, FLOAT
    # and TEXT columns read here have no result processors there), and making a Row of each
    # of 300k stage rows costs about a third of the read
    rows = result.cursor.fetchall()
    result.close()
    return keys, rows


def _frame(conn: Connection, query: Executable) -> pd.DataFrame:
    """The result of ``query`` as a frame, typed per column as the DataFrame constructor
    types lists."""
    import pandas as pd

    keys, rows = _rows(conn, query)
    if not rows:
        return pd.DataFrame({k: [] for k in keys}, columns=keys)
    return pd.DataFrame.from_records(rows, columns=keys)


def _stage_frame(
    s: Connection, job_id: int, candidate_ids: pd.Series, *, limited: bool, n: int
) -> pd.DataFrame:
    """The stage parameters of the given candidates, one row each, flat columns."""
    import pandas as pd

    # the columns in STAGE_KEYS order: the reshape and the pivot below name them from it
    query = select(Stage.candidate_id, Stage.stage, *(getattr(Stage, k) for k in STAGE_KEYS))
    if limited and n <= 5000:
        query = query.where(Stage.candidate_id.in_([int(i) for i in candidate_ids])).order_by(
            Stage.candidate_id, Stage.stage
        )
    else:
        # the whole job: one indexed join beats a huge IN list. Walking the job's candidates
        # in (job_id, trial_number) index order and each one's stages by primary key yields
        # this order without a sort (ordering by candidate_id made SQLite sort 300k rows)
        query = (
            query.join(Candidate, Candidate.id == Stage.candidate_id)
            .where(and_(Candidate.job_id == job_id))
            .order_by(Candidate.trial_number, Stage.stage)
        )
    _, rows = _rows(s, query)
    if not rows:
        return pd.DataFrame(index=pd.Index([], name="candidate_id"))
    # one object array instead of a long frame: the reshape below needs no per-column typing
    table = np.array(rows, dtype=object)
    ids, stage_of = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    n_stages = int(stage_of.max())
    count = len(table) // n_stages
    regular = count * n_stages == len(table) and bool(
        (stage_of == np.tile(np.arange(1, n_stages + 1), count)).all()
        and (ids.reshape(count, n_stages) == ids[::n_stages, None]).all()
    )
    if not regular:  # some candidate lacks a stage row: let pandas align them
        long = pd.DataFrame.from_records(rows, columns=["candidate_id", "stage", *STAGE_KEYS])
        wide = long.pivot(index="candidate_id", columns="stage", values=list(STAGE_KEYS))
        wide.columns = [f"s{stage}.{key}" for key, stage in wide.columns]
        return wide
    # every candidate has stages 1..n in order: a reshape is a pivot without the hashing;
    # infer_objects types each column as the DataFrame constructor would a list
    index = pd.Index(ids[::n_stages], name="candidate_id")
    values = table[:, 2:].reshape(count, n_stages, len(STAGE_KEYS))
    data = {
        f"s{i}.{key}": pd.Series(values[:, i - 1, j], index=index).infer_objects()
        for i in range(1, n_stages + 1)
        for j, key in enumerate(STAGE_KEYS)
    }
    return pd.DataFrame(data, index=index)


def candidates_query(job_id: int, state: CandidateState | None) -> Select[Any]:
    """Every ``ps_candidates`` column of the job's candidates in trial order, optionally only
    those in ``state``.

    Raises:
        ValueError: ``state`` is not one of :data:`search.vocabulary.CANDIDATE_STATES`.
    """
    query = (
        select(*_CANDIDATE_COLUMNS)
        .where(Candidate.job_id == job_id)
        .order_by(Candidate.trial_number)
    )
    if state is not None:
        if state not in CANDIDATE_STATES:
            raise ValueError(
                f"unknown candidate state {state!r} (expected one of {', '.join(CANDIDATE_STATES)})"
            )
        query = query.where(Candidate.state == state)
    return query
