"""L21 held as a dense matrix, for designs where the coupling is dense enough for BLAS.

In a fully or mostly crossed design (every subject sees most items: kb07, most
psycholinguistic experiments) each first-term level touches most rows of the dense block.
The sparse kernels (:mod:`lmmfast.factor.rank_update`, :func:`~lmmfast.factor.inverse_blocks.coupled_rows`)
then do a scattered multiply-add per pair of entries, at about 3 ns each, while the same
products as dense level-3 BLAS (``dsyrk`` for S −= L21 L21', ``dgemm`` for X W) run at
10–30 Gmadd/s on this machine's two cores, 0.03–0.1 ns each, on zeros included. BLAS wins
once the coupling is denser than about 1 in 6 (``prefer_dense``); kb07's 20-parameter model
(every subject sees every item) updates in 0.2 ms instead of 4 ms.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

from lmmfast.factor.rank_update import UpdatePattern

#: Seconds per scattered multiply-add of the sparse kernels, per thread (measured 2–4 ns).
SPARSE_SECONDS_PER_MADD = 3e-9

#: Seconds per multiply-add of dense BLAS on the whole machine (measured 10–30 Gmadd/s on two
#: cores; the lower rate, so that ties go to the sparse kernels).
DENSE_SECONDS_PER_MADD = 1e-10

#: Largest dense L21 kept (it is held twice, with W for the gradient): 64 MiB each.
MAX_DENSE_ENTRIES = 8 * 1024 * 1024


def prefer_dense(pattern: UpdatePattern, q1: int, q2: int, threads: int) -> bool:
    """Whether the dense q2 × q1 L21 with BLAS should beat the sparse kernels on ``threads``
    threads, and is small enough to hold.

    Examples
    --------
    >>> full = UpdatePattern.build(1, np.array([0, 3, 6]), np.array([0, 1, 2, 0, 1, 2]), 3)
    >>> prefer_dense(full, 2, 3, 1)
    True
    """
    if q1 * q2 > MAX_DENSE_ENTRIES or q2 == 0:
        return False
    sparse = pattern.work * SPARSE_SECONDS_PER_MADD / max(1, threads)
    dense = 0.5 * q2 * q2 * q1 * DENSE_SECONDS_PER_MADD
    return dense < sparse


class DenseCoupling:
    """The entries of L21 (or of any array laid out like it) scattered into a dense
    Fortran-ordered q2 × q1 matrix whose zeros stay zero.

    Column l k₁ + b holds component b of the first-term level l; entry e of ``pattern``
    (level l, row r of S) lands in row r.

    Examples
    --------
    >>> pattern = UpdatePattern.build(1, np.array([0, 2, 3]), np.array([0, 1, 1]), 2)
    >>> coupling = DenseCoupling(pattern, np.array([0, 0, 1]), 2)
    >>> S = np.zeros((2, 2), order="F")
    >>> coupling.subtract_outer_products(np.array([1.0, 2.0, 3.0]), S)
    >>> np.tril(S).tolist()
    [[-1.0, 0.0], [-2.0, -13.0]]
    """

    def __init__(self, pattern: UpdatePattern, level_of_entry: np.ndarray, n_levels: int) -> None:
        k1 = pattern.k1
        q2 = len(pattern.column_ptr) - 1
        columns = level_of_entry[:, None] * k1 + np.arange(k1)[None, :]
        #: position of L21[e k₁ + b] in the column-major dense matrix
        self._index = (pattern.rows[:, None] + columns * q2).ravel()
        self._matrix = np.zeros((q2, n_levels * k1), order="F")

    def _scatter(self, values: np.ndarray) -> np.ndarray:
        self._matrix.reshape(-1, order="F")[self._index] = values
        return self._matrix

    def subtract_outer_products(self, values: np.ndarray, S: np.ndarray) -> None:
        """S −= L21 L21' on the lower triangle of the Fortran-ordered ``S``, in place."""
        out = blas.dsyrk(-1.0, self._scatter(values), beta=1.0, c=S, lower=1, overwrite_c=1)
        if out is not S:  # only if S was not a Fortran-ordered float64 array
            S[...] = out

    def coupled_rows(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Y = (X W) at the entries of L21, as :func:`lmmfast.factor.inverse_blocks.coupled_rows`
        (X symmetric, both triangles)."""
        product = blas.dgemm(1.0, X, self._scatter(w))
        return product.reshape(-1, order="F")[self._index]
