"""Sums of the diagonal blocks of M⁻¹ = (Λ'Z'ZΛ + I)⁻¹ from the blocked factor.

The gradient of log|M| with respect to θ needs, per random-effects term, only the sum over
its levels of M⁻¹'s k×k diagonal blocks (:mod:`lmmfast.gradient`). With the blocked factor

    L = [L11 0; L21 L22],   M⁻¹ = L'⁻¹L⁻¹,   X = (L22 L22')⁻¹,

the later terms' blocks are diagonal blocks of X, and the first term's level-l block is

    L11ₗ'⁻¹ (I + V_l' X V_l) L11ₗ⁻¹,   V_l = the (sparse) columns of L21 of level l.

Summed over levels, the second part is Σₗ W_l' X W_l with W_l = V_l L11ₗ⁻¹: for each level,
the rows of X at that level's entries are read at the same entries — the pairs the rank
update visits, read instead of written, so it costs about two rank updates.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from lmmfast.factor.rank_update import UpdatePattern


@numba.njit(cache=True, nogil=True)
def first_term_inverse_rows(L11: np.ndarray, level_of_entry: np.ndarray, values: np.ndarray) -> np.ndarray:
    """w_e = v_e L11ₗ⁻¹ for every entry e (row v_e of L21, l its level), same layout as ``values``."""
    k1 = L11.shape[1]
    out = np.empty_like(values)
    for e in range(level_of_entry.shape[0]):
        j = level_of_entry[e]
        base = e * k1
        # solve w L11 = v, i.e. L11' w' = v', from the last component back
        for b in range(k1 - 1, -1, -1):
            acc = values[base + b]
            for a in range(b + 1, k1):
                acc -= out[base + a] * L11[j, a, b]
            out[base + b] = acc / L11[j, b, b]
    return out


@numba.njit(cache=True, nogil=True)
def first_term_own_sum(L11: np.ndarray) -> np.ndarray:
    """Σₗ L11ₗ'⁻¹ L11ₗ⁻¹ (k₁ × k₁)."""
    n1, k1, _ = L11.shape
    total = np.zeros((k1, k1))
    inverse = np.zeros((k1, k1))
    for j in range(n1):
        # inverse of the lower-triangular L11ₗ, column by column
        for c in range(k1):
            for r in range(k1):
                inverse[r, c] = 0.0
            inverse[c, c] = 1.0 / L11[j, c, c]
            for r in range(c + 1, k1):
                acc = 0.0
                for m in range(c, r):
                    acc -= L11[j, r, m] * inverse[m, c]
                inverse[r, c] = acc / L11[j, r, r]
        for a in range(k1):
            for b in range(k1):
                acc = 0.0
                for m in range(k1):
                    acc += inverse[m, a] * inverse[m, b]
                total[a, b] += acc
    return total


@numba.njit(cache=True, nogil=True)
def mirror_lower(X: np.ndarray) -> None:
    """Copy the lower triangle of the square ``X`` onto its upper triangle, in place."""
    n = X.shape[0]
    for c in range(n):
        for r in range(c + 1, n):
            X[c, r] = X[r, c]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _level_sums(k1, rows, entry_ptr, levels, w, X, out):
    """``out[j]`` = W_j' X W_j for each level j in ``levels`` (X symmetric, both triangles)."""
    y = np.empty(k1)
    for j in levels:
        total = out[j]
        for e in range(entry_ptr[j], entry_ptr[j + 1]):
            column = X[:, rows[e]]
            for b in range(k1):
                y[b] = 0.0
            for u in range(entry_ptr[j], entry_ptr[j + 1]):
                x = column[rows[u]]
                for b in range(k1):
                    y[b] += x * w[u * k1 + b]
            for a in range(k1):
                for b in range(k1):
                    total[a, b] += w[e * k1 + a] * y[b]


def coupled_sum(
    pattern: UpdatePattern, entry_ptr: np.ndarray, w: np.ndarray, X: np.ndarray, threads: int = 1
) -> np.ndarray:
    """Σₗ W_l' X W_l (k₁ × k₁) for X symmetric with both triangles filled; ``entry_ptr``
    delimits each level's entries.

    Examples
    --------
    >>> pattern = UpdatePattern.build(1, np.array([0, 2]), np.array([0, 1]), 2)
    >>> X = np.array([[2.0, 1.0], [1.0, 3.0]], order="F")
    >>> coupled_sum(pattern, np.array([0, 2]), np.array([1.0, 1.0]), X).tolist()  # [1 1] X [1 1]'
    [[7.0]]
    """
    n1 = len(entry_ptr) - 1
    levels = np.arange(n1, dtype=np.int64)
    # one partial sum per level, added up in level order: the same bits for any thread count
    per_level = np.zeros((n1, pattern.k1, pattern.k1))
    if threads <= 1 or n1 < 2:
        _level_sums(pattern.k1, pattern.rows, entry_ptr, levels, w, X, per_level)
    else:
        shares = [levels[i::threads] for i in range(min(threads, n1))]
        with ThreadPoolExecutor(max_workers=len(shares)) as pool:
            list(
                pool.map(
                    lambda share: _level_sums(pattern.k1, pattern.rows, entry_ptr, share, w, X, per_level), shares
                )
            )
    return per_level.sum(axis=0)
