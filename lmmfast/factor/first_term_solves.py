"""Triangular solves with the blocked factor's first term and its coupling.

With L = [L11 0; L21 L22], a solve with L eliminates the first term level by level
(``forward_first``: x₁ = L11⁻¹ b₁, then b₂ −= L21 x₁) before LAPACK's ``trtrs`` on L22, and a
solve with L' finishes with the transposed steps (``backward_first``). The right-hand side's
later-term rows are C-ordered, so that an entry of L21 reads or writes one row of all
columns at once; where every term is scalar the kernels are written out for one value per
entry, which saves the inner loops' overhead on the commonest crossed designs. The
levels' own solves (``lower_level_solves``, ``upper_level_solves``) also serve the dense
coupling (:mod:`lmmfast.factor.dense_coupling`), whose coupling products are BLAS calls.
"""

from __future__ import annotations

import numba
import numpy as np


def split_rows(rhs: np.ndarray, n1: int, k1: int, rest_order: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """A copy of the right-hand side ``rhs`` (a vector or a matrix) split into its first
    term's rows, (levels, k₁, columns) C-ordered, and the later terms' rows in
    ``rest_order`` ("C" for the kernels, "F" for LAPACK); and whether it was a vector.

    Examples
    --------
    >>> first, rest, vector = split_rows(np.arange(5.0), 2, 1, "C")
    >>> first.shape, rest.ravel().tolist(), vector
    ((2, 1, 1), [2.0, 3.0, 4.0], True)
    """
    vector = rhs.ndim == 1
    matrix = np.array(rhs, dtype=np.float64, copy=True).reshape(len(rhs), -1)
    q1 = n1 * k1
    first = matrix[:q1].reshape(n1, k1, -1).copy()
    rest = np.asarray(matrix[q1:], order="F" if rest_order == "F" else "C")
    return first, rest, vector


def join_rows(first: np.ndarray, rest: np.ndarray, vector: bool) -> np.ndarray:
    """The rows :func:`split_rows` split, stacked again (a vector where it was one).

    Examples
    --------
    >>> join_rows(*split_rows(np.arange(5.0), 2, 1, "F")).tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0]
    """
    out = np.vstack([first.reshape(-1, first.shape[2]), rest])
    return out[:, 0] if vector else out


@numba.njit(cache=True, nogil=True)
def lower_level_solves(L11, rhs):
    """rhs[j] = L11[j]⁻¹ rhs[j] for every level j, in place (``rhs``: levels × k₁ × columns);
    row operations, so that a long row (the dense coupling's, q₂ columns) is read in order."""
    n1, k1, _ = L11.shape
    m = rhs.shape[2]
    for j in range(n1):
        for a in range(k1):
            for p in range(a):
                factor = L11[j, a, p]
                for col in range(m):
                    rhs[j, a, col] -= factor * rhs[j, p, col]
            pivot = L11[j, a, a]
            for col in range(m):
                rhs[j, a, col] /= pivot


@numba.njit(cache=True, nogil=True)
def upper_level_solves(L11, rhs):
    """rhs[j] = L11[j]'⁻¹ rhs[j] for every level j, in place, as :func:`lower_level_solves`."""
    n1, k1, _ = L11.shape
    m = rhs.shape[2]
    for j in range(n1):
        for a in range(k1 - 1, -1, -1):
            for p in range(a + 1, k1):
                factor = L11[j, p, a]
                for col in range(m):
                    rhs[j, a, col] -= factor * rhs[j, p, col]
            pivot = L11[j, a, a]
            for col in range(m):
                rhs[j, a, col] /= pivot


@numba.njit(cache=True, nogil=True)
def forward_first(L11, cross_ptr, cross_row, cross_term, cross_offsets, sizes, L21, rhs1, rhs2):
    """x1 = L11⁻¹ rhs1 (in place), then rhs2 -= L21 x1."""
    n1, k1, _ = L11.shape
    m = rhs1.shape[2]
    lower_level_solves(L11, rhs1)
    for j in range(n1):
        for s in range(cross_ptr[j], cross_ptr[j + 1]):
            ks = sizes[cross_term[s]]
            row = cross_row[s]
            base = cross_offsets[s]
            for i in range(ks):
                for col in range(m):
                    acc = 0.0
                    for b in range(k1):
                        acc += L21[base + i * k1 + b] * rhs1[j, b, col]
                    rhs2[row + i, col] -= acc


@numba.njit(cache=True, nogil=True)
def backward_first(L11, cross_ptr, cross_row, cross_term, cross_offsets, sizes, L21, x2, rhs1):
    """rhs1 -= L21' x2, then x1 = L11'⁻¹ rhs1 (in place)."""
    n1, k1, _ = L11.shape
    m = rhs1.shape[2]
    for j in range(n1):
        for s in range(cross_ptr[j], cross_ptr[j + 1]):
            ks = sizes[cross_term[s]]
            row = cross_row[s]
            base = cross_offsets[s]
            for i in range(ks):
                for b in range(k1):
                    weight = L21[base + i * k1 + b]
                    for col in range(m):
                        rhs1[j, b, col] -= weight * x2[row + i, col]
    upper_level_solves(L11, rhs1)


@numba.njit(cache=True, nogil=True)
def forward_first_scalar(L11, cross_ptr, cross_row, L21, rhs1, rhs2):
    """:func:`forward_first` where every level of every term is a scalar (k = 1): one
    value per coupling entry, and ``rhs2`` C-ordered so that an entry's row is contiguous."""
    n1 = L11.shape[0]
    m = rhs1.shape[2]
    for j in range(n1):
        pivot = L11[j, 0, 0]
        for col in range(m):
            rhs1[j, 0, col] /= pivot
        for s in range(cross_ptr[j], cross_ptr[j + 1]):
            row = cross_row[s]
            weight = L21[s]
            for col in range(m):
                rhs2[row, col] -= weight * rhs1[j, 0, col]


@numba.njit(cache=True, nogil=True)
def backward_first_scalar(L11, cross_ptr, cross_row, L21, x2, rhs1):
    """:func:`backward_first` where every level of every term is a scalar (k = 1)."""
    n1 = L11.shape[0]
    m = rhs1.shape[2]
    for j in range(n1):
        for s in range(cross_ptr[j], cross_ptr[j + 1]):
            row = cross_row[s]
            weight = L21[s]
            for col in range(m):
                rhs1[j, 0, col] -= weight * x2[row, col]
        pivot = L11[j, 0, 0]
        for col in range(m):
            rhs1[j, 0, col] /= pivot
