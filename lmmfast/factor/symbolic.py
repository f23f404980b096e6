"""The size of a sparse Cholesky factor before it is computed: its column counts.

CHOLMOD's symbolic analysis knows nnz(L), but scikit-sparse does not pass it on. So the
counts are computed here from the pattern and CHOLMOD's fill-reducing permutation: the
elimination tree, then each row of L as the union of the tree paths from the row's
non-zeros up to its diagonal (the row-subtree characterisation; work proportional to
nnz(L), no value touched). From the counts follow the factor's memory, exactly, and the
work of one factorisation, Σ cⱼ², from which the time of an evaluation is estimated before
the first one runs.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _counts(row_start, lower_columns, n):
    """Column counts of L (diagonal included) for the matrix whose row k has the non-zeros
    ``lower_columns[row_start[k]:row_start[k + 1]]`` left of its diagonal."""
    parent = np.full(n, -1, dtype=np.int64)
    ancestor = np.full(n, -1, dtype=np.int64)
    for k in range(n):  # Liu's elimination tree, with path compression
        for position in range(row_start[k], row_start[k + 1]):
            node = lower_columns[position]
            while node != -1 and node < k:
                following = ancestor[node]
                ancestor[node] = k
                if following == -1:
                    parent[node] = k
                node = following
    counts = np.ones(n, dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    for k in range(n):
        mark[k] = k
        for position in range(row_start[k], row_start[k + 1]):
            node = lower_columns[position]
            while node != -1 and mark[node] != k:  # up the tree until a node row k already reached
                mark[node] = k
                counts[node] += 1
                node = parent[node]
    return counts


def factor_column_counts(indptr: np.ndarray, indices: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """nnz of each column of the Cholesky factor of P A P' (P: ``permutation``, the new order
    of the old indices), from A's lower-triangular CSC pattern (``indptr``, ``indices``).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> arrow = sp.csc_matrix(np.array([[4.0, 0, 0], [0, 4, 0], [1, 1, 4]]))  # lower triangle
    >>> factor_column_counts(arrow.indptr, arrow.indices, np.array([0, 1, 2])).tolist()
    [2, 2, 1]
    >>> factor_column_counts(arrow.indptr, arrow.indices, np.array([2, 0, 1])).tolist()  # hub first: fill
    [3, 2, 1]
    """
    n = len(indptr) - 1
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.asarray(permutation, dtype=np.int64)] = np.arange(n, dtype=np.int64)
    columns = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    rows = inverse[np.asarray(indices, dtype=np.int64)]
    columns = inverse[columns]
    high, low = np.maximum(rows, columns), np.minimum(rows, columns)
    off_diagonal = high != low
    high, low = high[off_diagonal], low[off_diagonal]
    order = np.argsort(high, kind="stable")
    row_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(high, minlength=n), out=row_start[1:])
    return _counts(row_start, low[order], n)


def factorization_work(counts: np.ndarray) -> float:
    """Multiply-adds of one numeric factorisation with these column counts: Σ (cⱼ − 1)².

    Examples
    --------
    >>> factorization_work(np.array([3, 2, 1]))
    5.0
    """
    below = counts.astype(np.float64) - 1.0
    return float(np.sum(below * below))


def supernodal_storage(counts: np.ndarray) -> tuple[float, float]:
    """Values a supernodal factor stores, and the largest update block its factorisation
    works in, from the column counts.

    A supernode — a run of columns whose counts fall by one each, so that their rows nest —
    is stored as a dense rectangle (its columns × the rows of its first), the upper triangle
    of its diagonal block included; it sends its update, a square of the rows below it, to
    the columns it reaches. For crossed designs the last supernode is a dense block of
    thousands of columns, and both terms are of the order of nnz(L) itself.

    Examples
    --------
    >>> supernodal_storage(np.array([3, 2, 1]))  # one supernode: a 3 × 3 square, no rows below
    (9.0, 0.0)
    >>> supernodal_storage(np.array([2, 3, 2, 1]))  # a column of 2, then a 3-column supernode
    (11.0, 1.0)
    """
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) == 0:
        return 0.0, 0.0
    starts = np.flatnonzero(np.concatenate([[True], counts[1:] != counts[:-1] - 1]))
    widths = np.diff(np.append(starts, len(counts)))
    heights = counts[starts].astype(np.float64)
    below = heights - widths
    return float(np.sum(widths * heights)), float(np.max(below * below))
