"""Reading a job's candidates as a table: filters, sorting, the Pareto front, JSON rows.

The public home of the reading API. The SQL behind it lives in the store
(``search/store/_query.py``, which documents the ``--where`` grammar); this module re-exports
it and adds :func:`to_records`, which turns any of its frames into JSON-ready rows.

Example:
    >>> parse_where("s2.kernel>=5")
    Condition(key='s2.kernel', op='>=', value=5, stage=2, field='kernel')
    >>> from search.store import Store
    >>> with Store.open("sqlite:///poolstride.db") as store:  # doctest: +SKIP
    ...     front = load_front(store, 1)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from search.store._query import (
    CANDIDATE_KEYS,
    OPERATORS,
    Condition,
    Front,
    count_candidates,
    load_candidates,
    load_front,
    output_columns,
    parse_sort,
    parse_where,
    stage_columns,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CANDIDATE_KEYS",
    "OPERATORS",
    "Condition",
    "Front",
    "count_candidates",
    "load_candidates",
    "load_front",
    "output_columns",
    "parse_sort",
    "parse_where",
    "stage_columns",
    "to_records",
]


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain JSON-ready dicts: NaN becomes ``None``, numpy scalars become Python ones.

    Example:
        >>> import pandas as pd
        >>> to_records(pd.DataFrame({"trial": [0], "val_acc": [float("nan")]}))
        [{'trial': 0, 'val_acc': None}]
    """
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
