"""Checks of function arguments, shared by every public entry point.

Each check returns the value in the form the caller needs, or raises an
:class:`~lmmfast.errors.ArgumentError` that names the argument, what it must be and what it
got. Data problems are :class:`~lmmfast.errors.DataError`\\ s and are checked where the data
are read, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmmfast.errors import ArgumentError


def _choices_text(choices: Sequence[str]) -> str:
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``.

    Examples
    --------
    >>> check_choice("re", "all", ("all", "none"))
    'all'
    >>> check_choice("re", "some", ("all", "none"))
    Traceback (most recent call last):
    ...
    lmmfast.errors.ArgumentError: re must be 'all' or 'none', got 'some'.
    """
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(f"{name} must be {_choices_text(choices)}, got {value!r}.")
    return value


def check_bool(name: str, value: object) -> bool:
    """``value`` as a bool, if it is one (numpy's included).

    Examples
    --------
    >>> check_bool("reml", np.True_)
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_level(level: object) -> float:
    """A confidence level strictly between 0 and 1.

    Examples
    --------
    >>> check_level(0.95)
    0.95
    >>> check_level(95)
    Traceback (most recent call last):
    ...
    lmmfast.errors.ArgumentError: level must be a number between 0 and 1, got 95.
    """
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ArgumentError(f"level must be a number between 0 and 1, got {level!r}.")
    return float(level)


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """An integer of at least ``minimum``.

    Examples
    --------
    >>> check_count("n", 10)
    10
    >>> check_count("points", 2, minimum=3)
    Traceback (most recent call last):
    ...
    lmmfast.errors.ArgumentError: points must be an integer >= 3, got 2.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ArgumentError(f"{name} must be {wanted}, got {value!r}.")
    return int(value)


def check_positive_number(name: str, value: object, unit: str = "") -> float:
    """A finite number greater than 0.

    Examples
    --------
    >>> check_positive_number("memory_budget", 2e9, "bytes")
    2000000000.0
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0 < value < np.inf
    ):
        what = f"a positive number of {unit}" if unit else "a positive number"
        raise ArgumentError(f"{name} must be {what}, got {value!r}.")
    return float(value)
