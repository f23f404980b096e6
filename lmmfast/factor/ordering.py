"""Stable orderings of the factor's integer keys (levels, rows of the dense block).

The blocked path sorts its coupling entries by first-term level and row once per fit, up
to tens of millions of them. Both keys are small integers, and NumPy sorts 16-bit keys
stably by radix in linear time, so one stable pass per key, least significant first, gives
:func:`numpy.lexsort`'s order several times faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Keys below this fit in 16 bits, which NumPy sorts by radix.
RADIX_BOUND = 2**16


def stable_order(keys: Sequence[np.ndarray], bounds: Sequence[int]) -> np.ndarray:
    """The order of :func:`numpy.lexsort` (the last key sorts first) for non-negative
    integer ``keys``, each below its entry of ``bounds``.

    Examples
    --------
    >>> level, row = np.array([1, 0, 1, 0]), np.array([3, 2, 0, 2])
    >>> stable_order((row, level), (4, 2)).tolist(), np.lexsort((row, level)).tolist()
    ([1, 3, 2, 0], [1, 3, 2, 0])
    """
    if len(keys) == 0 or any(bound > RADIX_BOUND for bound in bounds):
        return np.lexsort(tuple(keys))
    order: np.ndarray | None = None
    for key in keys:
        narrow = (key if order is None else key[order]).astype(np.uint16)
        step = np.argsort(narrow, kind="stable")
        order = step if order is None else order[step]
    assert order is not None
    return order
