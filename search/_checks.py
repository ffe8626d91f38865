"""Value checks with one-line messages, shared by the job config and the training settings.

Each returns the value it checked (numbers as ``float``) or raises ``ValueError`` naming the key,
so that a bad value reads the same wherever it was given: a job's TOML, a CLI flag or a direct
:class:`search.training.TrainConfig`.
"""

from __future__ import annotations

import math

__all__ = ["boolean", "integer", "number"]


def integer(key: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``.

    Example:
        >>> integer("trials", 3, minimum=1)
        3
        >>> integer("trials", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: trials 0 must be at least 1
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} {value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} {value} must be at least {minimum}")
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
