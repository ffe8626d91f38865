"""Value checks with one-line messages, shared by the job config and the training settings.

Each returns the value it checked (numbers as ``float``) or raises ``ValueError`` naming the key,
so that a bad value reads the same wherever it was given: a job's TOML, a CLI flag or a direct
:class:`search.training.TrainConfig`.

The ranges of the integers the database stores live here too: poolstride's integer columns
(``search/store/_models.py``, whose ``column_bounds`` maps a column to its range) are
``Integer`` (32-bit on PostgreSQL, 64-bit on SQLite: 32 bits is what both hold) or
``BigInteger`` (64-bit on both), and a value is checked against its column's range before
anything touches the database, so that the same input gets the same answer on either backend.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = [
    "INT32",
    "INT64",
    "SEEDS",
    "Bounds",
    "boolean",
    "integer",
    "number",
]


class Bounds(NamedTuple):
    """An inclusive range of integers.

    Example:
        >>> INT32
        Bounds(lo=-2147483648, hi=2147483647)
    """

    lo: int
    hi: int


INT32 = Bounds(-(2**31), 2**31 - 1)
INT64 = Bounds(-(2**63), 2**63 - 1)
# a job's seed: NumPy's generators (the data split's) refuse negative seeds, and the seeds of
# its trials, derived from it below 2**31, go to an Integer column
SEEDS = Bounds(0, INT32.hi)


def integer(
    key: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` if it is an integer (not a bool) from ``minimum`` to ``maximum``.

    Example:
        >>> integer("trials", 3, minimum=1)
        3
        >>> integer("trials", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: trials 0 must be at least 1
        >>> integer("priority", 2**33, maximum=INT32.hi)
        Traceback (most recent call last):
        ...
        ValueError: priority 8589934592 must be at most 2147483647
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} {value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} {value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{key} {value} must be at most {maximum}")
    return value


def number(key: str, value: object, *, positive: bool = False, below: float | None = None) -> float:
    """``value`` as a float if it is a finite number of at least 0 (above 0 with ``positive``),
    and below ``below`` if given.

    Example:
        >>> number("lr", 1, positive=True)
        1.0
        >>> number("label_smoothing", 1.0, below=1.0)
        Traceback (most recent call last):
        ...
        ValueError: label_smoothing 1.0 must be below 1.0
    """
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{key} {value!r} must be a number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{key} {value} must be {'positive' if positive else 'at least 0'}")
    if below is not None and value >= below:
        raise ValueError(f"{key} {value} must be below {below}")
    return float(value)


def boolean(key: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``.

    Example:
        >>> boolean("augment", "yes")
        Traceback (most recent call last):
        ...
        ValueError: augment 'yes' must be true or false
    """
    if not isinstance(value, bool):
        raise ValueError(f"{key} {value!r} must be true or false")
    return value
