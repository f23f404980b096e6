"""The entries of M⁻¹ on the pattern of a sparse Cholesky factor, and the gradient's traces
from them (the CHOLMOD path).

The analytic gradient needs M⁻¹ only where Z'Z has blocks (:mod:`lmmfast.gradient`), and
those lie in the pattern of L (after CHOLMOD's permutation). Neither CHOLMOD nor
scikit-sparse gives them; Takahashi's recurrence does, from L alone, column by column from
the last:

    Zᵢⱼ = −(1/Lⱼⱼ) Σ_{k ∈ S} Zᵢₖ Lₖⱼ  (i ∈ S),   Zⱼⱼ = 1/Lⱼⱼ² − (1/Lⱼⱼ) Σ_{k ∈ S} Zⱼₖ Lₖⱼ,

with S the rows of L's column j below its diagonal. Every Zᵢₖ it reads (i, k ∈ S) is in the
pattern of L — the reason the recurrence closes — so the work is of the order of the
factorisation's, and the memory one more array of nnz(L) values.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext

import numba
import numpy as np
from scipy.linalg import blas, lapack

from lmmfast.factor.inverse_blocks import add_block_traces
from lmmfast.factor.rank_update import map_shares

#: The factor's last columns that are full below the diagonal (its dense last supernode, the
#: items every subject couples) are inverted as one block by LAPACK where there are at least
#: this many: their part of the recurrence is a dense inverse, which BLAS runs many times
#: faster than scalar loops.
DENSE_TAIL_MIN = 32


#: Runs of consecutive columns that share at least this many rows of the dense block (the
#: supernodes of the factor's sparse part next to it) have the recurrence's terms among
#: those rows formed by BLAS, the block's inverse there gathered once for the whole run;
#: shorter sets are summed column by column, where a gather would cost as much as the sums.
SUPERNODE_MIN_ROWS = 64


def dense_tail_of_counts(counts: np.ndarray) -> int:
    """How many of the last columns of a lower-triangular factor with these column counts
    (nnz per column, the diagonal included) are full below the diagonal, where at least
    ``DENSE_TAIL_MIN`` are (else 0).

    Examples
    --------
    >>> dense_tail_of_counts(np.array([2, 2, 2, 1]))
    0
    >>> dense_tail_of_counts(np.r_[np.full(5, 2), np.arange(40, 0, -1)])  # a dense last 40
    40
    """
    n = len(counts)
    full = np.asarray(counts) == n - np.arange(n)
    tail = n - int(np.flatnonzero(~full)[-1]) - 1 if not full.all() else n
    return tail if tail >= DENSE_TAIL_MIN else 0


def dense_tail(indptr: np.ndarray) -> int:
    """:func:`dense_tail_of_counts` of a lower CSC factor (rows sorted, the diagonal first).

    Examples
    --------
    >>> dense_tail(np.r_[0, np.cumsum(np.arange(40, 0, -1))])  # a dense factor of 40 columns
    40
    """
    return dense_tail_of_counts(np.diff(indptr))


def selected_inverse(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, threads: int = 1) -> np.ndarray:
    """M⁻¹ on the pattern of L (lower CSC, rows sorted, the diagonal first in each column),
    for M = LL'; returned as values on that pattern.

    The last columns that are full below the diagonal (:func:`dense_tail`) are inverted as
    one block by LAPACK (``dpotri`` on L's block: it factors the Schur complement of the
    columns before it, whose inverse is M⁻¹'s trailing block); the recurrence runs over the
    columns before them, reading that block's entries from the dense inverse.

    The recurrence's terms among a column's rows in the dense block read only that block's
    inverse, known before the recurrence starts: they are formed first, for every column —
    by BLAS for runs of consecutive columns that share those rows (``SUPERNODE_MIN_ROWS``),
    the block's inverse there gathered once for the run; else column by column on
    ``threads`` threads (dealt out round-robin; each column's sums made by one thread in
    one order, so the result does not depend on the number of threads) — and the
    recurrence then runs over the columns in order for the terms that need its own results.
    """
    n = len(indptr) - 1
    Z = np.zeros_like(data)
    tail = dense_tail(indptr)
    start = n - tail
    block = np.zeros((tail, tail), order="F")
    if tail:
        _unpack_tail(indptr, indices, data, start, block)
        block, info = lapack.dpotri(block, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"dpotri failed on the factor's last {tail} columns (info {info})")
        _pack_tail(indptr, indices, block, start, Z)
        firsts, counts, widths, alone = _tail_supernodes(indptr, indices, start, SUPERNODE_MIN_ROWS)
        with ThreadPoolExecutor(max_workers=threads) if threads > 1 else nullcontext() as pool:
            for first, count, width in zip(firsts.tolist(), counts.tolist(), widths.tolist()):
                _supernode_terms(indptr, indices, data, start, block, first, count, width, Z, threads, pool)
        columns = np.flatnonzero(alone)
        map_shares(lambda share: _dense_terms(indptr, indices, data, start, block, share, Z), columns, threads)
    _sparse_columns(indptr, indices, data, start, Z)
    return Z


def _supernode_terms(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    start: int,
    block: np.ndarray,
    first: int,
    count: int,
    width: int,
    Z: np.ndarray,
    threads: int,
    pool: Executor | None,
) -> None:
    """:func:`_dense_terms` for the ``count`` columns from ``first``, whose last ``width``
    rows are the same rows of the dense block: the block's inverse at those rows gathered
    once (its columns dealt out to ``threads`` threads of ``pool``), times the columns'
    values there, by BLAS (``dsymm``, its lower triangle read)."""
    rows = indices[indptr[first + 1] - width : indptr[first + 1]] - start
    inverse = np.empty((width, width), order="F")
    map_shares(lambda share: _gather_lower(block, rows, share, inverse), np.arange(width), threads, pool)
    # each column's last ``width`` entries, a column of positions per column of the run
    positions = indptr[first + 1 : first + count + 1] - width + np.arange(width)[:, None]
    products = blas.dsymm(1.0, inverse, np.asfortranarray(data[positions]), side=0, lower=1)
    Z[positions] = products


@numba.njit(cache=True, nogil=True)
def _tail_supernodes(indptr, indices, start, min_rows):
    """Runs of two or more consecutive columns before ``start`` whose rows in the dense block
    are the same, at least ``min_rows`` of them: each run's first column, number of columns
    and rows there; and which columns are in no run."""
    firsts = np.empty(start, dtype=np.int64)
    counts = np.empty(start, dtype=np.int64)
    widths = np.empty(start, dtype=np.int64)
    alone = np.ones(start, dtype=np.bool_)
    runs = 0
    j = 0
    while j < start:
        last = indptr[j + 1]
        below = last - indptr[j] - 1
        width = below - _first_in_tail(indices, indptr[j], below, start)
        k = j + 1
        if width >= min_rows:
            while k < start:
                other = indptr[k + 1]
                other_below = other - indptr[k] - 1
                if other_below - _first_in_tail(indices, indptr[k], other_below, start) != width:
                    break
                same = True
                for m in range(1, width + 1):
                    if indices[other - m] != indices[last - m]:
                        same = False
                        break
                if not same:
                    break
                k += 1
        if k - j >= 2:
            firsts[runs], counts[runs], widths[runs] = j, k - j, width
            alone[j:k] = False
            runs += 1
        j = k
    return firsts[:runs], counts[:runs], widths[:runs], alone


@numba.njit(cache=True, nogil=True)
def _gather_lower(block, rows, columns, inverse):
    """Columns ``columns`` of the lower triangle of the block's inverse at ``rows``."""
    width = rows.shape[0]
    for c in columns:
        column = block[:, rows[c]]
        for r in range(c, width):
            inverse[r, c] = column[rows[r]]


@numba.njit(cache=True, nogil=True)
def _unpack_tail(indptr, indices, data, start, block):
    """Columns ``start``.. of L into the lower triangle of ``block``."""
    for c in range(block.shape[0]):
        for p in range(indptr[start + c], indptr[start + c + 1]):
            block[indices[p] - start, c] = data[p]


@numba.njit(cache=True, nogil=True)
def _pack_tail(indptr, indices, block, start, Z):
    """The lower triangle of ``block`` into Z on L's pattern of columns ``start``.."""
    for c in range(block.shape[0]):
        for p in range(indptr[start + c], indptr[start + c + 1]):
            Z[p] = block[indices[p] - start, c]


@numba.njit(cache=True, nogil=True, inline="always")
def _dense_rows(indices, data, offset, width, tail_from, start, block, acc):
    """The recurrence's terms of the set's rows ``tail_from``.. (those in the dense block),
    whose entries of Z are read from the block's inverse, a column per row: two rows at a
    time, each pass over the later rows serving both (the additions to every entry of
    ``acc`` in the order one row at a time makes them, so the sums are the same to the bit),
    each row's own sum in a register."""
    a = tail_from
    while a < width:
        k = indices[offset + a] - start
        l_k = data[offset + a]
        column = block[:, k]
        total = acc[a] + column[k] * l_k
        if a + 1 == width:
            acc[a] = total
            break
        b = a + 1
        kb = indices[offset + b] - start
        l_b = data[offset + b]
        other = block[:, kb]
        z = column[kb]
        acc[b] += z * l_k
        total += z * l_b
        total_b = acc[b] + other[kb] * l_b
        for m in range(b + 1, width):
            r = indices[offset + m] - start
            d = data[offset + m]
            z = column[r]
            w = other[r]
            acc[m] = acc[m] + z * l_k
            acc[m] = acc[m] + w * l_b
            total += z * d
            total_b += w * d
        acc[a] = total
        acc[b] = total_b
        a += 2


@numba.njit(cache=True, nogil=True, inline="always")
def _first_in_tail(indices, first, width, start):
    """The first of column ``first``'s ``width`` rows below the diagonal that is in the dense
    block (rows are sorted; ``width`` if none is)."""
    for a in range(width):
        if indices[first + 1 + a] >= start:
            return a
    return width


@numba.njit(cache=True, nogil=True)
def _dense_terms(indptr, indices, data, start, block, columns, Z):
    """For each of ``columns`` (before ``start``), the recurrence's terms among its rows in
    the dense block, read from the block's inverse (``block``, lower triangle), left in Z at
    those rows' places for :func:`_sparse_columns` to go on from."""
    for j in columns:
        first, last = indptr[j], indptr[j + 1]
        width = last - first - 1
        tail_from = _first_in_tail(indices, first, width, start)
        if tail_from == width:
            continue
        acc = np.zeros(width)
        _dense_rows(indices, data, first + 1, width, tail_from, start, block, acc)
        for m in range(tail_from, width):
            Z[first + 1 + m] = acc[m]


@numba.njit(cache=True, nogil=True)
def _sparse_columns(indptr, indices, data, start, Z):
    """Takahashi's recurrence for the columns before ``start``, from the last, its terms
    among each column's rows in the dense block already summed in Z (:func:`_dense_terms`)."""
    n = indptr.shape[0] - 1
    position = np.full(n, -1, dtype=np.int64)
    for j in range(start - 1, -1, -1):
        first, last = indptr[j], indptr[j + 1]
        diagonal = data[first]
        width = last - first - 1
        for m in range(width):
            position[indices[first + 1 + m]] = m
        acc = np.zeros(width)
        # the set's rows in the dense block come last (rows are sorted): their terms among
        # themselves are summed already; each row before them has its column of Z walked
        tail_from = _first_in_tail(indices, first, width, start)
        for m in range(tail_from, width):
            acc[m] = Z[first + 1 + m]
        for a in range(tail_from):
            k = indices[first + 1 + a]
            l_k = data[first + 1 + a]
            for p in range(indptr[k], indptr[k + 1]):
                r = indices[p]
                if r == k:
                    acc[a] += Z[p] * l_k
                else:
                    m = position[r]
                    if m >= 0:  # Z(r, k) and its mirror Z(k, r), both rows of column j's set
                        acc[m] += Z[p] * l_k
                        acc[a] += Z[p] * data[first + 1 + m]
        total = 0.0
        for m in range(width):
            value = -acc[m] / diagonal
            Z[first + 1 + m] = value
            total += value * data[first + 1 + m]
        Z[first] = 1.0 / (diagonal * diagonal) - total / diagonal
        for m in range(width):
            position[indices[first + 1 + m]] = -1


@numba.njit(cache=True, nogil=True)
def entry_position(indptr, indices, inverse_permutation, row, col):
    """Where M⁻¹[row, col] (original order) sits on L's pattern."""
    r = inverse_permutation[row]
    c = inverse_permutation[col]
    if r < c:
        r, c = c, r
    lo, hi = indptr[c], indptr[c + 1]
    while lo < hi:  # rows are sorted within a column
        mid = (lo + hi) // 2
        if indices[mid] < r:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def read_block(indptr, indices, Z, inverse_permutation, row0, col0, ka, kb, out):
    """``out[:ka, :kb]`` ← the block of M⁻¹ at rows ``row0``…, columns ``col0``…"""
    for i in range(ka):
        for j in range(kb):
            out[i, j] = Z[entry_position(indptr, indices, inverse_permutation, row0 + i, col0 + j)]


def pattern_checksum(indices: np.ndarray) -> int:
    """A checksum of a sparse pattern's row indices (each weighted by its position, modulo
    2⁶⁴): equal patterns have equal checksums, and a changed one almost surely another.

    Examples
    --------
    >>> pattern_checksum(np.array([0, 1, 2])) == pattern_checksum(np.array([0, 2, 1]))
    False
    """
    return int(_weighted_sum(np.asarray(indices)))


@numba.njit(cache=True, nogil=True)
def _weighted_sum(indices):
    total = np.uint64(0)
    for i in range(indices.shape[0]):
        total += np.uint64(indices[i] + 1) * np.uint64(i + 1)
    return total


@numba.njit(cache=True, nogil=True)
def pattern_positions(
    indptr, indices, inverse_permutation, slot_term_a, slot_term_b, slot_level_a, slot_level_b, slot_offsets,
    sizes, column_offsets, out,
):  # fmt: skip
    """``out`` (laid out as the cross-products' block values) ← where M⁻¹ at every stored
    block of Z'Z sits on L's pattern: fixed with the pattern, so found once per fit and
    gathered from the selected inverse at each gradient."""
    for s in range(slot_term_a.shape[0]):
        ta, tb = slot_term_a[s], slot_term_b[s]
        ka, kb = sizes[ta], sizes[tb]
        row0 = column_offsets[ta] + slot_level_a[s] * ka
        col0 = column_offsets[tb] + slot_level_b[s] * kb
        base = slot_offsets[s]
        for i in range(ka):
            for j in range(kb):
                out[base + i * kb + j] = entry_position(indptr, indices, inverse_permutation, row0 + i, col0 + j)


@numba.njit(cache=True, nogil=True)
def trace_sums(
    inverse,
    slot_term_a,
    slot_term_b,
    slot_level_a,
    slot_level_b,
    block_values,
    sizes,
    slot_offsets,
    templates,
    template_offsets,
    out,
):
    """``out`` (packed like the templates) += Σₗ [M⁻¹Λ'Z'Z]ₗₗ per term, over every stored
    block of Z'Z, from ``inverse``: M⁻¹ at those blocks, laid out as their values."""
    for s in range(slot_term_a.shape[0]):
        ta, tb = slot_term_a[s], slot_term_b[s]
        ka, kb = sizes[ta], sizes[tb]
        base = slot_offsets[s]
        block = inverse[base : base + ka * kb].reshape((ka, kb))
        mirrored = not (ta == tb and slot_level_a[s] == slot_level_b[s])
        lam_a, lam_b = template_offsets[ta], template_offsets[tb]
        add_block_traces(block, ka, kb, block_values, base, templates, lam_a, lam_b, mirrored, out, lam_a, lam_b)
