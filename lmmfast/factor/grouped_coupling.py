"""The rank update summed once per distinct level size, for balanced scalar designs.

With a scalar first term (template t₁) and scalar later terms (Λ₂ = diag λ), first-term level
j with count nⱼ = (Z₁'Z₁)ⱼⱼ and coupling column aⱼ = Z₂'zⱼ contributes

    L21ⱼ L21ⱼ' = Λ₂ aⱼaⱼ' Λ₂ · t₁² / (1 + t₁² nⱼ),

whose only dependence on θ is through nⱼ. Summing aⱼaⱼ' once per distinct count g,
P_g = Σ_{nⱼ = g} aⱼaⱼ', turns every update into Λ₂(A₂₂ − Σ_g w_g P_g)Λ₂ + I with
w_g = t₁²/(1 + t₁²g): a pass over the dense block per group instead of a scattered
multiply-add per pair of entries. The gradient's couplings reduce the same way, to d_g = (X ∘ P_g) λ per
group (X the inverse of the dense block). In a balanced design (every subject sees the same
number of items) there is one group, and the update costs a few passes over the dense
block whatever the number of rows.
"""

from __future__ import annotations

import numba
import numpy as np

from lmmfast.factor.dense_coupling import DENSE_SECONDS_PER_MADD, SPARSE_SECONDS_PER_MADD
from lmmfast.factor.inverse_blocks import mirror_lower
from lmmfast.factor.rank_update import UpdatePattern, subtract_outer_products

#: Most memory the per-group sums may take (all groups together).
MAX_GROUPED_BYTES = 256 * 2**20


def prefer_grouped(pattern: UpdatePattern, groups: int, q2: int, threads: int) -> bool:
    """Whether per-group sums (a few dense passes per group and evaluation) should beat the
    sparse kernels (the update and the gradient's coupled rows, three times its work).

    Examples
    --------
    >>> full = UpdatePattern.build(1, np.array([0, 3, 6]), np.array([0, 1, 2, 0, 1, 2]), 3)
    >>> prefer_grouped(full, 1, 3, 1)
    True
    """
    if groups * q2 * q2 * 8 > MAX_GROUPED_BYTES:
        return False
    sparse = 3.0 * pattern.work * SPARSE_SECONDS_PER_MADD / max(1, threads)
    grouped = 4.0 * groups * q2 * q2 * DENSE_SECONDS_PER_MADD
    return grouped < sparse


@numba.njit(cache=True, nogil=True)
def _weighted_row_sums(X, P, scale, out):
    """out[r] = Σ_c X[r, c] P[r, c] scale[c], reading both Fortran-ordered matrices down columns."""
    n = X.shape[0]
    out[:] = 0.0
    for c in range(n):
        s = scale[c]
        for r in range(n):
            out[r] += X[r, c] * P[r, c] * s


@numba.njit(cache=True, nogil=True)
def _subtract_scaled(P, weight, scale, out):
    """out[r, c] −= weight scale[r] scale[c] P[r, c] for r ≥ c, down the Fortran-ordered columns."""
    n = P.shape[0]
    for c in range(n):
        column = weight * scale[c]
        for r in range(c, n):
            out[r, c] -= column * scale[r] * P[r, c]


class GroupedCoupling:
    """Σ_{nⱼ = g} aⱼaⱼ' for every distinct first-term count g (k₁ = 1, scalar later terms).

    Parameters
    ----------
    pattern : UpdatePattern
        Where the coupling entries go (one per first-term level and row of the dense block).
    coupling : numpy.ndarray
        Z₂'Z₁ at the pattern's entries (θ-free).
    level_of_entry : numpy.ndarray
        First-term level of each entry.
    counts : numpy.ndarray
        (Z₁'Z₁)ⱼⱼ for every first-term level j.

    Examples
    --------
    >>> pattern = UpdatePattern.build(1, np.array([0, 2, 4]), np.array([0, 1, 0, 1]), 2)
    >>> grouped = GroupedCoupling(pattern, np.array([1.0, 1.0, 1.0, 2.0]), np.array([0, 0, 1, 1]), np.array([2.0, 2.0]))
    >>> grouped.sums[0].tolist()  # one group: (1, 1)(1, 1)' + (1, 2)(1, 2)'
    [[2.0, 3.0], [3.0, 5.0]]
    """

    def __init__(
        self, pattern: UpdatePattern, coupling: np.ndarray, level_of_entry: np.ndarray, counts: np.ndarray
    ) -> None:
        q2 = len(pattern.column_ptr) - 1
        self.counts, group_of_level = np.unique(counts, return_inverse=True)
        group_of_entry = group_of_level.ravel()[level_of_entry]
        #: P_g, both triangles, Fortran-ordered like the dense block
        self.sums: list[np.ndarray] = []
        for g in range(len(self.counts)):
            S = np.zeros((q2, q2), order="F")
            subtract_outer_products(pattern, np.where(group_of_entry == g, coupling, 0.0), S)
            np.negative(S, out=S)
            mirror_lower(S)
            self.sums.append(S)

    def _weights(self, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """w_g = t₁²/(1 + t₁²g) and s_g = t₁/(1 + t₁²g)."""
        denominator = 1.0 + t1 * t1 * self.counts
        return t1 * t1 / denominator, t1 / denominator

    def subtract_scaled(self, t1: float, scale: np.ndarray, out: np.ndarray) -> None:
        """out −= Λ₂(Σ_g w_g P_g)Λ₂ on the lower triangle, in place (``scale`` = λ, Λ₂'s diagonal)."""
        for weight, total in zip(self._weights(t1)[0], self.sums):
            _subtract_scaled(total, weight, scale, out)

    def trace_sums(
        self, X: np.ndarray, t1: float, scale: np.ndarray, column_term: np.ndarray, n_terms: int
    ) -> tuple[float, np.ndarray]:
        """The couplings' share of Σₗ [M⁻¹Λ'Z'Z]ₗₗ: (first term, one value per later term).

        With yⱼ = X wⱼ, wⱼ = sⱼ Λ₂aⱼ: the first term gains Σⱼ (t₁nⱼsⱼ² − sⱼ) aⱼ'Λ₂XΛ₂aⱼ and later
        term t gains −t₁ Σⱼ sⱼ Σ_{r in t} (XΛ₂aⱼaⱼ')ᵣᵣ; summed per group, both read
        d_g = (X ∘ P_g) λ (``scale`` = λ, ``column_term`` = the term of each row of X).
        """
        _, s = self._weights(t1)
        first = 0.0
        later = np.zeros(n_terms)
        d = np.empty(X.shape[0])
        for g, total in enumerate(self.sums):
            _weighted_row_sums(X, total, scale, d)
            first += (t1 * self.counts[g] * s[g] ** 2 - s[g]) * float(d @ scale)
            later -= t1 * s[g] * np.bincount(column_term, weights=d, minlength=n_terms)
        return first, later
