"""The analytic gradient of the profiled ML deviance and REML criterion with respect to θ.

With M = Λ'Z'ZΛ + I, Λᵢ = ∂Λ/∂θᵢ and Λ invertible, Λ'Z'ZΛ = M − I gives

    ∂ log|M| / ∂θᵢ = 2 tr(M⁻¹ Λ'Z'Z Λᵢ) = 2 tr((I − M⁻¹) Λ⁻¹ Λᵢ),

and, since û = Λ'Z'e at the optimum (e the residual), the envelope theorem gives

    ∂ r² / ∂θᵢ = −2 e'Z Λᵢ û = −2 û' Λ⁻¹ Λᵢ û.

Λ repeats one k×k template T per level of a term and Λᵢ repeats its derivative e_r e_c', so
both reduce to k×k sums per term: B = Σₗ (M⁻¹)ₗₗ (diagonal blocks, from the factor) and
Q = Σₗ ûₗ ûₗ'. For θᵢ at T[r, c] of a term with n levels:

    ∂d/∂θᵢ = 2 [n T⁻¹ − B T⁻¹]_cr − 2 (dof / r²) [Q T⁻¹]_cr,

with dof = n (ML) or n − p (REML). The REML criterion adds log|R_X|²; log|M| + log|R_X|² is
the log-determinant of the whole penalised system, whose derivative has the same form with
B replaced by the diagonal blocks of its inverse's random-effects part,
M⁻¹ + M⁻¹B_X (R_X'R_X)⁻¹ B_X'M⁻¹ (B_X = Λ'Z'X): B gains Σₗ CₗCₗ' with C = L'⁻¹R_ZX R_X⁻¹.

Λ must be invertible; at θ on the boundary (a template diagonal exactly 0) the gradient is
taken a hair inside (:func:`off_boundary`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import solve_triangular

from lmmfast.crossprod import CrossProducts
from lmmfast.parameters import ThetaLayout

#: How far inside the boundary a zero template diagonal is moved for the gradient.
BOUNDARY_NUDGE = 1e-8


def off_boundary(layout: ThetaLayout, theta: np.ndarray) -> np.ndarray:
    """θ with template diagonals below :data:`BOUNDARY_NUDGE` raised to it.

    Examples
    --------
    >>> off_boundary(ThetaLayout.from_sizes([1, 1]), np.array([0.0, 0.5])).tolist()
    [1e-08, 0.5]
    """
    out = np.array(theta, dtype=np.float64, copy=True)
    low = layout.is_diagonal & (out < BOUNDARY_NUDGE)
    out[low] = BOUNDARY_NUDGE
    return out


def theta_gradient(
    layout: ThetaLayout,
    cross_products: CrossProducts,
    theta: np.ndarray,
    inverse_sums: Sequence[np.ndarray],
    u: np.ndarray,
    reml_rows: np.ndarray | None,
    penalised_rss: float,
    dof: float,
) -> np.ndarray:
    """Assemble ∂(criterion)/∂θ from the per-term sums (formulas in the module docstring).

    Parameters
    ----------
    layout, cross_products
        The model's θ layout and cross-products (for term sizes, levels, offsets).
    theta : numpy.ndarray
        Strictly inside the boundary.
    inverse_sums : sequence of numpy.ndarray
        Per term, Σ over levels of M⁻¹'s diagonal blocks.
    u : numpy.ndarray
        Conditional modes of the spherical random effects (engine order).
    reml_rows : numpy.ndarray or None
        C = L'⁻¹R_ZX R_X⁻¹ (q × p) for REML; None for ML.
    penalised_rss, dof : float
        r² and n (ML) or n − p (REML).

    Returns
    -------
    numpy.ndarray
        One entry per θ.
    """
    cp = cross_products
    gradient = np.empty(layout.size)
    for term, (k, levels, offset) in enumerate(zip(cp.term_sizes, cp.term_levels, cp.column_offsets)):
        k, levels, offset = int(k), int(levels), int(offset)
        template_inverse = solve_triangular(layout.template(theta, term), np.eye(k), lower=True)
        rows = slice(offset, offset + levels * k)
        modes = u[rows].reshape(levels, k)
        diagonal_sum = inverse_sums[term]
        if reml_rows is not None:
            c = reml_rows[rows].reshape(levels, k, -1)
            diagonal_sum = diagonal_sum + np.einsum("lap,lbp->ab", c, c)
        per_entry = 2.0 * (levels * template_inverse - diagonal_sum @ template_inverse)
        per_entry -= 2.0 * dof / penalised_rss * (modes.T @ modes @ template_inverse)
        mask = layout.term_of == term
        gradient[mask] = per_entry[layout.cols[mask], layout.rows[mask]]
    return gradient
