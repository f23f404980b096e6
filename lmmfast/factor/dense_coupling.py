"""The blocked factor's coupling L21 held as a dense matrix, for designs where it is dense.

In a fully or mostly crossed design (every subject sees most items: kb07, most
psycholinguistic experiments) each first-term level touches most rows of the dense block.
The sparse kernels (:mod:`lmmfast.factor.rank_update`, :mod:`lmmfast.factor.inverse_blocks`)
then do a scattered multiply-add per pair of entries, at about 3 ns each, while the same
products as dense level-3 BLAS (``dsyrk`` for S −= L21 L21', ``dgemm`` for X W) run at
10–30 Gmadd/s on this machine's two cores, 0.03–0.1 ns each, on zeros included. BLAS wins
once the coupling is denser than about 1 in 6 (``prefer_dense``).

Here every step that touches L21 works on the dense matrix, never on its entries: the
elimination (A21 = Λ₂'Z₂'Z₁Λ₁, then L21 = A21 L11'⁻¹, level by level along rows of q₂
values), the rank update, the solves' coupling products, and the gradient's W = L21 L11⁻¹,
Y = X W and their per-level and per-term contractions. The matrix is stored as
``(n₁, k₁, q₂)`` in C order, which is the q₂ × q₁ matrix in Fortran order, so each level's
k₁ rows of L21' are contiguous and BLAS reads the whole without a copy: forming L21 entry by
entry and scattering it into a dense copy for each BLAS call would cost about as much again
as the rest of an evaluation on fully crossed designs such as kb07.
"""

from __future__ import annotations

import copy

import numba
import numpy as np
from scipy.linalg import blas

from lmmfast.factor.first_term_solves import lower_level_solves, upper_level_solves
from lmmfast.factor.rank_update import UpdatePattern

#: Seconds per scattered multiply-add of the sparse kernels, per thread (measured 2–4 ns).
SPARSE_SECONDS_PER_MADD = 3e-9

#: Seconds per multiply-add of dense BLAS on the whole machine (measured 10–30 Gmadd/s on two
#: cores; the lower rate, so that ties go to the sparse kernels).
DENSE_SECONDS_PER_MADD = 1e-10

#: Largest dense L21 kept, 64 MiB: Z₂'Z₁, T₁'Z₁'Z₂ and L21 are held for the fit, and the
#: gradient adds W, Y and Z₁'Z₂Λ₂ for a moment.
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


@numba.njit(cache=True, nogil=True)
def times_band(rows, band, out):
    """out[l] = rows[l] Λ₂ for every first-term level l, with Λ₂[c + d, c] = ``band[d, c]``
    (:func:`lmmfast.factor.blocked_layout.band_positions`); each band is a pass along the rows."""
    n1, k1, q2 = rows.shape
    for level in range(n1):
        for a in range(k1):
            for c in range(q2):
                out[level, a, c] = band[0, c] * rows[level, a, c]
            for d in range(1, band.shape[0]):
                for c in range(q2 - d):
                    out[level, a, c] += band[d, c] * rows[level, a, c + d]


@numba.njit(cache=True, nogil=True)
def first_times(first_template, cross, out):
    """out[l] = T₁' cross[l] for every first-term level l (T₁' upper triangular: row a of the
    result mixes the rows b ≥ a)."""
    n1, k1, q2 = cross.shape
    for level in range(n1):
        for a in range(k1):
            for c in range(q2):
                out[level, a, c] = 0.0
            for b in range(a, k1):
                weight = first_template[b, a]
                if weight != 0.0:
                    for c in range(q2):
                        out[level, a, c] += weight * cross[level, b, c]


class DenseCoupling:
    """Z₂'Z₁ and L21 as dense ``(n₁, k₁, q₂)`` arrays (the q₂ × q₁ matrices in Fortran order)
    and the steps of the blocked factor that use them.

    Parameters
    ----------
    pattern : UpdatePattern
        Where the coupling's entries lie (entry e: a first-term level and a row of S).
    level_of_entry : numpy.ndarray
        The first-term level of each entry.
    n_levels : int
        Levels of the first term.
    cross_values : numpy.ndarray
        Z₂'Z₁ at the entries, k₁ values per row of S in each, as the factor stores them.

    Examples
    --------
    >>> pattern = UpdatePattern.build(1, np.array([0, 2, 3]), np.array([0, 1, 1]), 2)
    >>> coupling = DenseCoupling(pattern, np.array([0, 0, 1]), 2, np.array([1.0, 2.0, 3.0]))
    >>> coupling.cross[:, 0, :].tolist()  # row l: Z₁'Z₂ of first-term level l
    [[1.0, 2.0], [0.0, 3.0]]
    """

    def __init__(
        self, pattern: UpdatePattern, level_of_entry: np.ndarray, n_levels: int, cross_values: np.ndarray
    ) -> None:
        k1 = pattern.k1
        q2 = len(pattern.column_ptr) - 1
        #: position of entry e's component b in the C-ordered (n₁, k₁, q₂) array
        index = ((level_of_entry[:, None] * k1 + np.arange(k1)[None, :]) * q2 + pattern.rows[:, None]).ravel()
        #: where each entry's values sit in an array stored like Z₁'Z₂ (the entries' layout)
        self.entry_index = index
        self.cross = np.zeros((n_levels, k1, q2))
        self.cross.reshape(-1)[index] = cross_values
        #: L21' level by level, k₁ rows of q₂ each (made by the first elimination)
        self.L21t = np.empty((0, k1, q2))
        #: T₁'Z₁'Z₂ level by level, and the band of Λ₂, at the last elimination (for the gradient)
        self._first_scaled = np.empty((0, k1, q2))
        self._band = np.zeros((1, q2))

    def fresh(self, factored: bool = False) -> DenseCoupling:
        """A coupling that shares Z₁'Z₂ with this one and holds its own L21 and products
        (copies of this one's where ``factored``)."""
        twin = copy.copy(self)
        if factored:
            twin.L21t, twin._first_scaled = self.L21t.copy(), self._first_scaled.copy()
            return twin  # the band is replaced, never written, by each elimination
        twin.L21t = np.empty((0, *self.cross.shape[1:]))
        twin._first_scaled = np.empty_like(twin.L21t)
        twin._band = np.zeros((1, self.cross.shape[2]))
        return twin

    @staticmethod
    def _matrix(levels: np.ndarray) -> np.ndarray:
        """The q₂ × q₁ Fortran-ordered matrix whose transpose is stored as ``levels``."""
        n1, k1, q2 = levels.shape
        return levels.reshape(n1 * k1, q2).T

    def eliminate(self, L11: np.ndarray, first_template: np.ndarray, band: np.ndarray) -> None:
        """L21 = Λ₂'Z₂'Z₁Λ₁ L11'⁻¹ (stored as its transpose) for the first term's factor L11."""
        if self.L21t.shape != self.cross.shape:
            self.L21t = np.empty_like(self.cross)
            self._first_scaled = np.empty_like(self.cross)
        first_times(first_template, self.cross, self._first_scaled)
        times_band(self._first_scaled, band, self.L21t)
        lower_level_solves(L11, self.L21t)
        self._band = band

    def subtract_outer_products(self, S: np.ndarray) -> None:
        """S −= L21 L21' on the lower triangle of the Fortran-ordered ``S``, in place."""
        out = blas.dsyrk(-1.0, self._matrix(self.L21t), beta=1.0, c=S, lower=1, overwrite_c=1)
        if out is not S:  # only if S was not a Fortran-ordered float64 array
            S[...] = out

    def forward(self, first: np.ndarray, rest: np.ndarray) -> None:
        """rest −= L21 x₁ in place, for ``first`` (levels × k₁ × columns) already L11⁻¹b₁."""
        rest -= self._matrix(self.L21t) @ first.reshape(-1, first.shape[2])

    def backward(self, rest: np.ndarray, first: np.ndarray) -> None:
        """first −= L21' x₂ in place (before the levels' solves with L11')."""
        first -= (self._matrix(self.L21t).T @ rest).reshape(first.shape)

    def times(self, V1: np.ndarray, V2: np.ndarray, out1: np.ndarray, out2: np.ndarray) -> None:
        """out2 += Z₂'Z₁ V1 and out1 += Z₁'Z₂ V2, in place (V1, out1: levels × k₁ × columns)."""
        cross = self._matrix(self.cross)
        out2 += cross @ V1.reshape(-1, V1.shape[2])
        out1 += (cross.T @ V2).reshape(out1.shape)

    def inverse_rows(self, L11: np.ndarray) -> np.ndarray:
        """W = L21 L11⁻¹ level by level, stored as W' like L21'."""
        out = self.L21t.copy()
        upper_level_solves(L11, out)
        return out

    def coupled(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Y = X W for the symmetric X (both triangles), stored as Y' like W'."""
        product = blas.dgemm(1.0, X, self._matrix(w))
        return product.T.reshape(w.shape)

    @staticmethod
    def level_products(w: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Σ over rows of W and Y restricted to each first-term level: Wₗ'Yₗ (k₁ × k₁ each)."""
        return np.matmul(w, y.transpose(0, 2, 1))

    def first_term_traces(self, y: np.ndarray) -> np.ndarray:
        """The couplings' share of the first term's trace sum, with the sign that
        :func:`lmmfast.factor.inverse_blocks.add_coupling_traces` adds: −Σₗ Yₗ'(Z₁'Z₂Λ₂)ₗ',
        over every later term at once (k₁ × k₁)."""
        scaled = np.empty_like(self.cross)
        times_band(self.cross, self._band, scaled)
        return -np.matmul(y, scaled.transpose(0, 2, 1)).sum(axis=0)

    def later_term_traces(self, y: np.ndarray, start: int, levels: int, k: int) -> np.ndarray:
        """The couplings' share of the trace sum of the later term whose rows of S are
        ``start`` … ``start + levels k``: −Σ over its blocks of Yₛ'(T₁'Z₁'Z₂)ₛ (k × k). Y is
        zero-padded away from the entries, and so is Z₁'Z₂: the sum over every block is the
        sum over the stored ones."""
        stop = start + levels * k
        Y = y[:, :, start:stop].reshape(-1, k)
        scaled = self._first_scaled[:, :, start:stop].reshape(-1, k)
        return -(Y.T @ scaled)
