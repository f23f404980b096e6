"""The analytic gradient of the profiled ML deviance and REML criterion with respect to θ.

With A = Z'Z, M = Λ'AΛ + I, Λᵢ = ∂Λ/∂θᵢ (zero but for e_r e_c' in every level block of the
term t that holds θᵢ at T_t[r, c]), and the criterion d = log|M| [+ log|R_X|²] + dof·log r²:

* ∂ log|M| = tr(M⁻¹ ∂M) = 2 tr(M⁻¹Λ'A Λᵢ) = 2 G_t[c, r], with G_t = Σ over t's levels of the
  diagonal blocks of M⁻¹Λ'A — from the factor, on Z'Z's pattern only
  (:meth:`lmmfast.factor.BlockedFactor.logdet_gradient_sums`);
* ∂ r² = −2 e'ZΛᵢû (envelope theorem; e the weighted residual) = −2 R_t[r, c], with
  R_t = Σₗ (Z'e)ₗ ûₗ' and Z'e = Z'y − Z'Xβ̂ − AΛû from the stored cross-products;
* (REML) ∂ log|R_X'R_X| = 2 Σₗ [Kₗ Hₗ']_cr, with C = M⁻¹Λ'Z'X = L'⁻¹R_ZX, K = C (R_X'R_X)⁻¹
  and H = AΛC − Z'X.

No inverse of Λ is needed, so the gradient is exact on the boundary (a template diagonal at
0) and stable near it. dof = n (ML) or n − p (REML).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmmfast.parameters import ThetaLayout


def per_level_products(left: np.ndarray, right: np.ndarray, sizes: np.ndarray, levels: np.ndarray) -> list[np.ndarray]:
    """Σₗ leftₗ rightₗ' per term, for arrays with one row per random effect (engine order)
    and any number of columns; term t's level l is the k_t rows starting at its offset + l k_t.

    Examples
    --------
    >>> per_level_products(np.ones((4, 1)), np.arange(4.0)[:, None], np.array([2]), np.array([2]))[0].tolist()
    [[2.0, 4.0], [2.0, 4.0]]
    """
    out = []
    start = 0
    width = left.reshape(len(left), -1).shape[1]
    for k, n in zip(sizes, levels):
        k, n = int(k), int(n)
        a = left[start : start + n * k].reshape(n, k, width)
        b = right[start : start + n * k].reshape(n, k, width)
        out.append(np.einsum("lap,lbp->ab", a, b))
        start += n * k
    return out


def theta_gradient(
    layout: ThetaLayout,
    logdet_sums: Sequence[np.ndarray],
    residual_sums: Sequence[np.ndarray],
    reml_sums: Sequence[np.ndarray] | None,
    penalised_rss: float,
    dof: float,
) -> np.ndarray:
    """Assemble ∂(criterion)/∂θ from the per-term k×k sums G_t, R_t and (REML) Σ KₗHₗ'.

    Examples
    --------
    >>> layout = ThetaLayout.from_sizes([1])
    >>> theta_gradient(layout, [np.array([[3.0]])], [np.array([[2.0]])], None, 4.0, 10.0).tolist()
    [-4.0]
    """
    gradient = np.empty(layout.size)
    for term in range(len(layout.sizes)):
        mask = layout.term_of == term
        rows, cols = layout.rows[mask], layout.cols[mask]
        value = 2.0 * logdet_sums[term][cols, rows] - 2.0 * dof / penalised_rss * residual_sums[term][rows, cols]
        if reml_sums is not None:
            value += 2.0 * reml_sums[term][cols, rows]
        gradient[mask] = value
    return gradient
