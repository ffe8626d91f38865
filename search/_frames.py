"""Helpers the analyses share on frames of candidates (:func:`search.query.load_candidates`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["complete_rows", "stage_numbers"]


def complete_rows(frame: pd.DataFrame, needed: Sequence[str]) -> pd.DataFrame:
    """The complete candidates of ``frame`` with every column of ``needed`` present.

    Raises:
        ValueError: a column of ``needed`` is missing from ``frame``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"state": ["complete", "failed"], "val_acc": [0.9, None]})
        >>> len(complete_rows(df, ["val_acc"]))
        1
    """
    cols = list(dict.fromkeys(needed))
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"column {missing[0]!r} is missing from the candidates")
    used = frame[frame[cols].notna().all(axis=1)]
    if "state" in used.columns:
        used = used[used["state"] == "complete"]
    return used


def stage_numbers(frame: pd.DataFrame) -> list[int]:
    """The stages (numbered from 1) that ``frame``'s ``sN.KEY`` columns name.

    Example:
        >>> import pandas as pd
        >>> stage_numbers(pd.DataFrame(columns=["s2.kernel", "s1.downsample", "val_acc"]))
        [1, 2]
    """
    found = {
        int(c[1 : c.index(".")])
        for c in frame.columns
        if isinstance(c, str) and c.startswith("s") and "." in c and c[1 : c.index(".")].isdigit()
    }
    return sorted(found)
