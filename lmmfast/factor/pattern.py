"""The fixed sparsity pattern of Λ'Z'ZΛ + I and the kernel that refills it for a new θ.

The pattern (lower triangle, CSC, sorted row indices) is built once from the cross-product
blocks. For each θ, :func:`fill_scaled` writes Λ_a' B Λ_b of every stored block straight into
the pattern's value array; no sparse matrix product is formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from lmmfast.crossprod import CrossProducts
from lmmfast.factor.kernels import sandwich_entry


@dataclass(frozen=True)
class LowerPattern:
    """Lower-triangular CSC pattern of Λ'Z'ZΛ + I.

    Attributes
    ----------
    indptr, indices : numpy.ndarray
        CSC structure (row indices sorted within each column).
    position : numpy.ndarray
        For every entry of the cross-product blocks, its index in the CSC values, or −1 for
        entries above the diagonal (not stored).
    diagonal : numpy.ndarray
        Indices of the diagonal entries in the CSC values.
    """

    indptr: np.ndarray
    indices: np.ndarray
    position: np.ndarray
    diagonal: np.ndarray

    @property
    def nnz(self) -> int:
        return len(self.indices)


@numba.njit(cache=True)
def _block_coordinates(
    slot_term_a, slot_term_b, slot_level_a, slot_level_b, slot_offsets, sizes, column_offsets, total
):
    rows = np.empty(total, dtype=np.int64)
    cols = np.empty(total, dtype=np.int64)
    for s in range(slot_term_a.shape[0]):
        ta = slot_term_a[s]
        tb = slot_term_b[s]
        ka = sizes[ta]
        kb = sizes[tb]
        row0 = column_offsets[ta] + slot_level_a[s] * ka
        col0 = column_offsets[tb] + slot_level_b[s] * kb
        base = slot_offsets[s]
        for i in range(ka):
            for j in range(kb):
                rows[base + i * kb + j] = row0 + i
                cols[base + i * kb + j] = col0 + j
    return rows, cols


def block_coordinates(cp: CrossProducts) -> tuple[np.ndarray, np.ndarray]:
    """Row and column (in Z'Z) of every stored block entry, in ``block_values``' order."""
    return _block_coordinates(
        cp.slot_term_a,
        cp.slot_term_b,
        cp.slot_level_a,
        cp.slot_level_b,
        cp.slot_offsets,
        cp.term_sizes,
        cp.column_offsets,
        len(cp.block_values),
    )


def build_lower_pattern(cp: CrossProducts) -> LowerPattern:
    """The CSC pattern of the lower triangle of Λ'Z'ZΛ + I, and where each block entry goes.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmfast.crossprod import form_cross_products
    >>> from lmmfast.design.random import RandomTerm
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
    >>> build_lower_pattern(form_cross_products([t], np.ones((3, 1)), np.ones(3))).indptr.tolist()
    [0, 1, 2]
    """
    total = len(cp.block_values)
    rows, cols = block_coordinates(cp)
    source = np.flatnonzero(rows >= cols)
    order = np.lexsort((rows[source], cols[source]))
    source = source[order]
    indices = rows[source]
    columns = cols[source]
    indptr = np.zeros(cp.q + 1, dtype=np.int64)
    np.cumsum(np.bincount(columns, minlength=cp.q), out=indptr[1:])
    position = np.full(total, -1, dtype=np.int64)
    position[source] = np.arange(len(source))
    diagonal = np.flatnonzero(indices == columns)
    return LowerPattern(indptr=indptr, indices=indices, position=position, diagonal=diagonal)


def full_matrix(cp: CrossProducts) -> sp.csr_matrix:
    """Z'Z as one symmetric sparse matrix (both triangles), from the stored blocks.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmfast.crossprod import form_cross_products
    >>> from lmmfast.design.random import RandomTerm
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
    >>> full_matrix(form_cross_products([t], np.ones((3, 1)), np.ones(3))).toarray().tolist()
    [[2.0, 0.0], [0.0, 1.0]]
    """
    rows, cols = block_coordinates(cp)
    # each stored block once; the blocks off the diagonal once more, mirrored
    off = (cp.slot_term_a != cp.slot_term_b) | (cp.slot_level_a != cp.slot_level_b)
    sizes = cp.term_sizes[cp.slot_term_a] * cp.term_sizes[cp.slot_term_b]
    mirrored = np.repeat(off, sizes)
    values = cp.block_values
    matrix = sp.coo_matrix(
        (
            np.concatenate([values, values[mirrored]]),
            (np.concatenate([rows, cols[mirrored]]), np.concatenate([cols, rows[mirrored]])),
        ),
        shape=(cp.q, cp.q),
    )
    return matrix.tocsr()


@numba.njit(cache=True, nogil=True)
def fill_scaled(
    block_values, slot_term_a, slot_term_b, slot_offsets, sizes, templates, template_offsets, position, diagonal, out
):
    """``out`` ← values of Λ'Z'ZΛ + I in the pattern: each block B becomes Λ_a' B Λ_b."""
    for s in range(slot_term_a.shape[0]):
        ta = slot_term_a[s]
        tb = slot_term_b[s]
        ka = sizes[ta]
        kb = sizes[tb]
        lam_a = template_offsets[ta]
        lam_b = template_offsets[tb]
        base = slot_offsets[s]
        if ka == 1 and kb == 1:
            p = position[base]
            if p >= 0:
                out[p] = templates[lam_a] * block_values[base] * templates[lam_b]
            continue
        for i in range(ka):
            for j in range(kb):
                p = position[base + i * kb + j]
                if p >= 0:
                    out[p] = sandwich_entry(block_values, base, ka, kb, templates, lam_a, lam_b, i, j)
    for d in diagonal:
        out[d] += 1.0
