"""The gradient of the compiled criterion of a small model (:mod:`lmmfast.factor.envelope`).

With Ωθ = Λ̃'ΩΛ̃ + diag(I_q, 0) (Λ̃ = diag(Λ, I)) factored as LL', the criterion is a
combination of the log-determinants of three leading blocks of Ωθ — the first q rows
(d₁ = log|L_Z|²), the first q + p (d₂ = d₁ + log|R_X|²) and the whole (d₃ = d₂ + log r²):

    ML:   d₁ + dof (d₃ − d₂),        REML: d₂ + dof (d₃ − d₂).

Each ∂dₖ/∂θⱼ is tr(Ωθₖ⁻¹ ∂Ωθₖ) = 2 tr(Ωθₖ⁻¹ (Λ̃'ΩΛ̃ⱼ)ₖ), and the difference of the last two
inverses is of rank one: Ωθ⁻¹ − diag(Ωθ_{q+p}⁻¹, 0) = ũũ'/r², with ũ = (L_{q+p}'⁻¹ ℓ, −1)
and ℓ the first q + p entries of L's last row. So the gradient is 2 tr(W Λ̃'ΩΛ̃ⱼ) for

    W = Ωθ_m⁻¹ + (dof / r²) ũũ',   m = q (ML) or q + p (REML),

which needs Ωθ_m⁻¹ only on the envelope: Takahashi's recurrence from L computes exactly
those entries (the envelope is closed under it). Forming W from the rank-one term rather
than as a difference of two inverses keeps it free of cancellation. Λ̃ⱼ = ∂Λ̃/∂θⱼ is e_r e_c'
in every level block of θⱼ's term, so tr(W Λ̃'ΩΛ̃ⱼ) = Σ over the blocks of (W Λ̃'Ω)[b + c, b + r].
"""

from __future__ import annotations

import numba
import numpy as np


def column_structure(first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The envelope by columns: for column i, the rows k > i whose envelope reaches it
    (first[k] ≤ i), ascending, as (pointers, rows) in compressed-column form.

    Examples
    --------
    >>> pointers, rows = column_structure(np.array([0, 0, 2, 0]))
    >>> pointers.tolist(), rows.tolist()
    ([0, 2, 3, 4, 4], [1, 3, 3, 3])
    """
    width = len(first)
    counts = np.zeros(width + 1, dtype=np.int64)
    for k in range(width):
        counts[first[k] + 1 : k + 1] += 1
    pointers = np.cumsum(counts)
    rows = np.empty(int(pointers[-1]), dtype=np.int64)
    fill = pointers[:-1].copy()
    for k in range(width):
        columns = np.arange(first[k], k)
        rows[fill[columns]] = k
        fill[columns] += 1
    return pointers, rows


@numba.njit(cache=True, nogil=True)
def _envelope_inverse(factor, pointers, rows, m, inverse):
    """Takahashi's recurrence: the entries of (L_m L_m')⁻¹ on the envelope (lower triangle,
    into ``inverse``), L_m the first m rows and columns of the lower factor in ``factor``."""
    for i in range(m - 1, -1, -1):
        pivot = factor[i, i]
        end = pointers[i]
        while end < pointers[i + 1] and rows[end] < m:
            end += 1
        for a in range(end - 1, pointers[i] - 1, -1):
            j = rows[a]
            total = 0.0
            for b in range(pointers[i], end):
                k = rows[b]
                total += factor[k, i] * (inverse[k, j] if k >= j else inverse[j, k])
            inverse[j, i] = -total / pivot
        total = 0.0
        for b in range(pointers[i], end):
            k = rows[b]
            total += factor[k, i] * inverse[k, i]
        inverse[i, i] = (1.0 / pivot - total) / pivot


@numba.njit(cache=True, nogil=True)
def joint_solution(factor, pointers, rows, out):
    """The penalised least-squares solution [û; β̂] = L_{q+p}'⁻¹ ℓ into ``out[:q + p]``
    (ℓ: the first q + p entries of the factor's last row) by back substitution."""
    m = factor.shape[0] - 1
    for i in range(m - 1, -1, -1):
        total = factor[m, i]
        for b in range(pointers[i], pointers[i + 1]):
            k = rows[b]
            if k >= m:
                break
            total -= factor[k, i] * out[k]
        out[i] = total / factor[i, i]


@numba.njit(cache=True, nogil=True)
def solution_and_rx(factor, pointers, rows, packed, columns, n_z, p):
    """[û; β̂] (:func:`joint_solution`), the random effects b = Λû (``packed``: the
    templates the factor was made with) and a copy of R_X' (lower, p × p) from the factor."""
    coefficients = np.empty(n_z + p)
    joint_solution(factor, pointers, rows, coefficients)
    effects = _scaled_modes(packed, columns, coefficients, n_z)
    rx_t = np.zeros((p, p))
    for i in range(p):
        for j in range(i + 1):
            rx_t[i, j] = factor[n_z + i, n_z + j]
    return coefficients, effects, rx_t


@numba.njit(cache=True, nogil=True, inline="always")
def _scaled_modes(packed, columns, u, n_z):
    """Λu on Z's columns: Λ's row x holds its template's row below the diagonal."""
    out = np.empty(n_z)
    for x in range(n_z):
        start, position, size, template = columns[1, x], columns[2, x], columns[3, x], columns[4, x]
        total = 0.0
        for s in range(position + 1):
            total += packed[template + position * size + s] * u[start + s]
        out[x] = total
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _scaled_entry(packed, omega, columns, a, b):
    """(Λ̃'Ω)[a, b]: Λ̃'s column a holds its template's column below the diagonal."""
    start, position, size, template = columns[1, a], columns[2, a], columns[3, a], columns[4, a]
    if template < 0:
        return omega[a, b]
    total = 0.0
    for r in range(position, size):
        total += packed[template + r * size + position] * omega[start + r, b]
    return total


@numba.njit(cache=True, nogil=True)
def envelope_gradient(packed, omega, factor, inverse, pointers, rows, columns, parameters, n_z, p, reml, dof, out):
    """Fill ``out`` with the criterion's gradient over θ from the factor L of Ωθ in
    ``factor`` (:func:`lmmfast.factor.envelope._envelope_criterion` has just run with the
    same ``packed`` templates). ``parameters`` holds per θⱼ its term's first column, block
    size and number of levels, and its template row and column; ``inverse`` is work space."""
    width = omega.shape[0]
    first = columns[0]
    lead = n_z + p if reml else n_z
    _envelope_inverse(factor, pointers, rows, lead, inverse)
    # ũ = ([û; β̂], −1), then v = Λ̃ũ and h = Ωv on Z's columns
    u = np.empty(width)
    u[width - 1] = -1.0
    joint_solution(factor, pointers, rows, u)
    v = u.copy()
    v[:n_z] = _scaled_modes(packed, columns, u, n_z)
    h = np.zeros(n_z)
    for b in range(n_z):
        total = 0.0
        for x in range(first[b], b + 1):
            total += omega[b, x] * v[x]
        for a in range(pointers[b], pointers[b + 1]):
            x = rows[a]
            total += omega[x, b] * v[x]
        h[b] = total
    r2 = factor[width - 1, width - 1] ** 2
    rank_one = dof / r2
    for j in range(parameters.shape[1]):
        offset, size, levels, r, c = (
            parameters[0, j],
            parameters[1, j],
            parameters[2, j],
            parameters[3, j],
            parameters[4, j],
        )
        total = 0.0
        for level in range(levels):
            block = offset + level * size
            row_c, row_r = block + c, block + r
            trace = 0.0
            for a in range(first[row_c], row_c + 1):
                trace += inverse[row_c, a] * _scaled_entry(packed, omega, columns, a, row_r)
            for b in range(pointers[row_c], pointers[row_c + 1]):
                a = rows[b]
                if a >= lead:
                    break
                trace += inverse[a, row_c] * _scaled_entry(packed, omega, columns, a, row_r)
            total += trace + rank_one * u[row_c] * h[row_r]
        out[j] = 2.0 * total
