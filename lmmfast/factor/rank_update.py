"""The sparse rank update S ← S − L21 L21' of the blocked path.

L21 couples the first term's levels to the rows of the dense block S. Level j touches only
the r_j rows it co-occurs with, so the update costs Σ_j r_j² k₁ / 2 multiply-adds, scattered
over S — which for large designs is far bigger than any cache. The kernel is column-
oriented (left-looking): column c of S collects, from every level that touches row c, that
level's products with its rows at or below c. All writes of a column land in that one
column, which stays in the L1/L2 cache, and each level's entries are read as one contiguous
run. Columns are disjoint, so they are dealt out to threads without locks; every entry of S
is updated by one thread in a fixed order, so the result does not depend on the number of
threads.

Column by column, each column of S gathers the entries of the levels that touch it; the
columns of one level of a vector-valued term (an item's intercept and slope) are touched
together, so a level's entries are read once per such group rather than once per column,
which saves about a quarter of the memory traffic on designs with random slopes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numba
import numpy as np

from lmmfast.factor.ordering import stable_order

#: Multiply-adds below which the update runs on one thread (starting threads costs ~0.1 ms).
PARALLEL_WORK = 1e6

#: Columns of S below which the update runs on one thread: too few to share (kb07's 128
#: took longer on 2 threads than on 1).
PARALLEL_COLUMNS = 512


_Result = TypeVar("_Result")


def map_shares(
    run: Callable[[np.ndarray], _Result], groups: np.ndarray, threads: int, executor: Executor | None = None
) -> list[_Result]:
    """``run(share)`` for ``threads`` round-robin shares of ``groups``, on the threads of
    ``executor`` (a pool started for this call if None), results in share order; on the
    calling thread alone where ``threads`` ≤ 1 or there is a single group.

    A fit passes the pool its factor keeps: starting threads for every pass would cost about
    as much as a pass itself while BLAS's own threads are still spinning.

    Examples
    --------
    >>> map_shares(lambda share: share.tolist(), np.arange(5), 2)
    [[0, 2, 4], [1, 3]]
    """
    if threads <= 1 or len(groups) < 2:
        return [run(groups)]
    shares = [groups[i::threads] for i in range(min(threads, len(groups)))]
    if executor is not None:
        return list(executor.map(run, shares))
    with ThreadPoolExecutor(max_workers=len(shares)) as pool:
        return list(pool.map(run, shares))


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def unsigned_index_type(bound: int) -> type[np.unsignedinteger]:
    """The narrowest of uint32 and uint64 that holds indices below ``bound``.

    The kernels index with these arrays' values: numba checks every signed index for a
    negative value to wrap around, and an unsigned one never (numba PR 929); with half the
    bytes to read as well, the scattered update runs nearly twice as fast.

    Examples
    --------
    >>> unsigned_index_type(10).__name__, unsigned_index_type(2**40).__name__
    ('uint32', 'uint64')
    """
    return np.uint32 if bound <= 2**32 else np.uint64


@dataclass(frozen=True)
class UpdatePattern:
    """Where L21's entries go, fixed for the whole fit.

    Entry e is one (first-term level, row of S) pair; entries are stored level by level with
    rows increasing, and entry e's k₁ values sit at ``L21[e k₁ : (e + 1) k₁]``.

    The columns of S come in groups (the k columns of one level of a vector-valued term)
    that every level touches together, as consecutive entries: the kernels read a level's
    entries once per group rather than once per column, which halves the memory traffic of
    designs with random slopes.

    Attributes
    ----------
    k1 : int
        Columns per first-term level.
    rows : numpy.ndarray
        Row of S of each entry. This and the other index arrays are unsigned
        (:func:`unsigned_index_type`).
    level_start, level_end : numpy.ndarray
        The first entry of the entry's level, and one past its last.
    column_ptr, column_entries : numpy.ndarray
        The entries of each row c of S (CSR-style), so that column c can gather them.
    group_ptr : numpy.ndarray
        The first column of each group of columns, and one past the last column.
    work : float
        Multiply-adds per update.
    """

    k1: int
    rows: np.ndarray
    level_start: np.ndarray
    level_end: np.ndarray
    column_ptr: np.ndarray
    column_entries: np.ndarray
    group_ptr: np.ndarray
    work: float

    @classmethod
    def build(
        cls, k1: int, entry_ptr: np.ndarray, rows: np.ndarray, size: int, group_ptr: np.ndarray | None = None
    ) -> UpdatePattern:
        """From the level pointer ``entry_ptr`` (n₁ + 1), each entry's row of S and, optionally,
        the column groups (default: every column alone).

        Raises
        ------
        ValueError
            If some level touches part of a group only, or not as consecutive entries.

        Examples
        --------
        >>> pattern = UpdatePattern.build(1, np.array([0, 2, 3]), np.array([0, 1, 1]), 2)
        >>> pattern.level_end.tolist(), pattern.column_ptr.tolist(), pattern.work
        ([2, 2, 3], [0, 1, 3], 4.0)
        """
        counts = np.diff(entry_ptr)
        rows = np.asarray(rows, dtype=np.int64)
        column_ptr = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=size), out=column_ptr[1:])
        level_end = np.repeat(entry_ptr[1:], counts).astype(np.int64)
        column_entries = stable_order((rows,), (size,)).astype(np.int64)
        if group_ptr is None:
            group_ptr = np.arange(size + 1, dtype=np.int64)
        group_ptr = np.asarray(group_ptr, dtype=np.int64)
        _check_groups(rows, level_end, column_ptr, column_entries, group_ptr)
        per_level = counts.astype(np.float64)
        index = unsigned_index_type(max(len(rows), size) + 1)
        return cls(
            k1=int(k1),
            rows=rows.astype(index),
            level_start=np.repeat(entry_ptr[:-1], counts).astype(index),
            level_end=level_end.astype(index),
            column_ptr=column_ptr.astype(index),
            column_entries=column_entries.astype(index),
            group_ptr=group_ptr.astype(index),
            work=float(np.sum(per_level * (per_level + 1) / 2)) * k1,
        )


def _check_groups(rows, level_end, column_ptr, column_entries, group_ptr) -> None:
    """Every entry in a group's first row is followed, in its level, by the group's other rows."""
    widths = np.diff(group_ptr)
    for width in np.unique(widths[widths > 1]):
        firsts = group_ptr[:-1][widths == width]
        counts = column_ptr[firsts + 1] - column_ptr[firsts]
        others = column_ptr[firsts + width] - column_ptr[firsts + 1]
        starts = (
            np.repeat(column_ptr[firsts], counts)
            + np.arange(int(counts.sum()))
            - np.repeat(np.cumsum(counts) - counts, counts)
        )
        entries = column_entries[starts]
        expected = np.repeat(firsts, counts)
        for j in range(1, int(width)):
            following = entries + j
            if (
                np.any(others != (width - 1) * counts)
                or np.any(following >= len(rows))
                or np.any(rows[np.minimum(following, len(rows) - 1)] != expected + j)
                or np.any(level_end[np.minimum(following, len(rows) - 1)] != level_end[entries])
            ):
                raise ValueError("a level touches a column group partly or not as consecutive entries")


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _subtract_columns(k1, rows, level_end, column_ptr, column_entries, columns, values, S):
    """The update restricted to the single columns ``columns`` of S (lower triangle)."""
    for c in columns:
        column = S[:, c]
        for t in range(column_ptr[c], column_ptr[c + 1]):
            e = column_entries[t]
            end = level_end[e]
            # entries after e in its level have rows below c: the lower triangle only
            if k1 == 1:
                ve = values[e]
                for u in range(e, end):
                    column[rows[u]] -= values[u] * ve
            elif k1 == 2:
                v0 = values[2 * e]
                v1 = values[2 * e + 1]
                for u in range(e, end):
                    column[rows[u]] -= values[2 * u] * v0 + values[2 * u + 1] * v1
            else:
                pe = e * k1
                for u in range(e, end):
                    pu = u * k1
                    acc = 0.0
                    for b in range(k1):
                        acc += values[pu + b] * values[pe + b]
                    column[rows[u]] -= acc


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _subtract_groups(k1, rows, level_end, column_ptr, column_entries, group_ptr, groups, values, S):
    """The update restricted to the column groups ``groups`` (lower triangle): each level's
    entries below a group are read once for all the group's columns."""
    for g in groups:
        c0 = group_ptr[g]
        width = group_ptr[g + 1] - c0
        for t in range(column_ptr[c0], column_ptr[c0 + 1]):
            e = column_entries[t]
            end = level_end[e]
            # the group's own triangle
            for j in range(width):
                for i in range(j, width):
                    acc = 0.0
                    for b in range(k1):
                        acc += values[(e + i) * k1 + b] * values[(e + j) * k1 + b]
                    S[c0 + i, c0 + j] -= acc
            below = e + width
            if width == 2 and k1 == 2:
                a0 = values[2 * e]
                a1 = values[2 * e + 1]
                b0 = values[2 * e + 2]
                b1 = values[2 * e + 3]
                for u in range(below, end):
                    r = rows[u]
                    x0 = values[2 * u]
                    x1 = values[2 * u + 1]
                    S[r, c0] -= x0 * a0 + x1 * a1
                    S[r, c0 + 1] -= x0 * b0 + x1 * b1
            elif width == 2 and k1 == 1:
                a0 = values[e]
                b0 = values[e + 1]
                for u in range(below, end):
                    r = rows[u]
                    x0 = values[u]
                    S[r, c0] -= x0 * a0
                    S[r, c0 + 1] -= x0 * b0
            else:
                for u in range(below, end):
                    r = rows[u]
                    for j in range(width):
                        acc = 0.0
                        for b in range(k1):
                            acc += values[u * k1 + b] * values[(e + j) * k1 + b]
                        S[r, c0 + j] -= acc


def subtract_outer_products(
    pattern: UpdatePattern, values: np.ndarray, S: np.ndarray, threads: int = 1, executor: Executor | None = None
) -> None:
    """S −= L21 L21' on the lower triangle of the Fortran-ordered ``S``, L21 given by
    ``pattern`` and its ``values``.

    With ``threads`` > 1 the column groups are dealt out round-robin to that many threads (the
    kernel releases the GIL), those of ``executor`` where given (:func:`map_shares`); Python
    threads rather than numba's parallel layer, because the latter's OpenMP backend aborts a
    process that forks after using it (as the bootstrap does).

    Examples
    --------
    >>> pattern = UpdatePattern.build(1, np.array([0, 2]), np.array([0, 1]), 2)
    >>> S = np.zeros((2, 2), order="F")
    >>> subtract_outer_products(pattern, np.array([1.0, 2.0]), S)
    >>> S.tolist()
    [[-1.0, 0.0], [-2.0, -4.0]]
    """
    p = pattern
    groups = np.arange(len(p.group_ptr) - 1, dtype=np.int64)
    singles = len(groups) == S.shape[1]

    def run(share: np.ndarray) -> None:
        if singles:
            _subtract_columns(p.k1, p.rows, p.level_end, p.column_ptr, p.column_entries, share, values, S)
        else:
            _subtract_groups(p.k1, p.rows, p.level_end, p.column_ptr, p.column_entries, p.group_ptr, share, values, S)

    map_shares(run, groups, threads, executor)
