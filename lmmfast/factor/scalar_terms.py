"""The penalised least-squares solution of a model whose random-effects terms are all scalar,
in one compiled call.

Where every term has one column (random intercepts, the common generalized design), the
first term's block of Λ'Z'WZΛ + I is diagonal. Eliminating it leaves the Schur complement
of everything else — the later terms, X and y — as one small dense matrix (MixedModels.jl's
blocked view of the augmented system):

    Ωθ = [[L₁, 0], [C', Lₛ]] [[L₁, C], [0, Lₛ']],   L₁ = diag(√(θ₁² d_j + 1)),
    C = L₁⁻¹ Ωθ[first, rest],   Lₛ Lₛ' = Ωθ[rest, rest] − C'C.

Lₛ's rows for X and y hold R_X and c_β, so one pass gives log|L|², β̂ and û. This is what
the factorisation paths compute in some thirty calls from Python, for a generalized model's
PIRLS iterations, where those calls cost more than the arithmetic: it is built only where the
elimination and the dense factor are small (:data:`MAX_WORK`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.linalg import solve_triangular

from lmmfast.crossprod import CrossProducts
from lmmfast.parameters import ThetaLayout

#: Built where the elimination and the dense factor need at most this many multiply-adds
#: (some hundreds of microseconds; above that the factorisation paths' call overhead matters
#: little).
MAX_WORK = 1_000_000


@numba.njit(cache=True, nogil=True)
def _solve_scalar_terms(
    scales,
    column_scales,
    block_values,
    ZtXy,
    XytXy,
    first_positions,
    coupling_ptr,
    coupling_columns,
    coupling_positions,
    coupling_terms,
    dense_rows,
    dense_columns,
    dense_positions,
    dense_term_a,
    dense_term_b,
    fully_coupled,
    C,
    S,
    u,
    beta,
):
    """Fill ``S`` with Lₛ (lower), ``u`` and ``beta`` with û and β̂; return log|L|², or NaN
    where a pivot of L is not positive (R_X's: the fixed-effects columns are collinear).
    ``fully_coupled``: every level of the first term is coupled to every later column."""
    n1 = first_positions.shape[0]
    m = S.shape[0]
    p = XytXy.shape[0] - 1
    q2 = m - p - 1
    S[:] = 0.0
    for e in range(dense_rows.shape[0]):
        S[dense_rows[e], dense_columns[e]] += (
            scales[dense_term_a[e]] * scales[dense_term_b[e]] * block_values[dense_positions[e]]
        )
    for i in range(q2):
        S[i, i] += 1.0
        for c in range(p + 1):
            S[q2 + c, i] = column_scales[i] * ZtXy[n1 + i, c]
    for a in range(p + 1):
        for c in range(a + 1):
            S[q2 + a, q2 + c] = XytXy[a, c]
    # eliminate the first term, one level (one diagonal entry) at a time
    s1 = scales[0]
    logdet = 0.0
    nonzero = np.empty(m, dtype=np.int64)
    roots = np.empty(n1)
    for j in range(n1):
        pivot = s1 * s1 * block_values[first_positions[j]] + 1.0
        logdet += np.log(pivot)
        roots[j] = np.sqrt(pivot)
        scale = s1 / roots[j]
        row = C[j]
        if not fully_coupled:
            row[:] = 0.0
        count = 0
        for e in range(coupling_ptr[j], coupling_ptr[j + 1]):
            column = coupling_columns[e]
            row[column] = scale * scales[coupling_terms[e]] * block_values[coupling_positions[e]]
            nonzero[count] = column
            count += 1
        for c in range(p + 1):
            row[q2 + c] = scale * ZtXy[j, c]
            nonzero[count] = q2 + c
            count += 1
        if not fully_coupled:
            for x in range(count):
                a = nonzero[x]
                ra = row[a]
                for y in range(x + 1):
                    S[a, nonzero[y]] -= ra * row[nonzero[y]]
    if fully_coupled:  # C'C by BLAS
        gram = C.T @ C
        for a in range(m):
            for b in range(a + 1):
                S[a, b] -= gram[a, b]
    # the dense Cholesky of the rest, in place (lower); y's pivot is r², which may be 0
    for k in range(m):
        for i in range(k):
            value = S[k, i]
            for t in range(i):
                value -= S[k, t] * S[i, t]
            S[k, i] = value / S[i, i]
        pivot = S[k, k]
        for t in range(k):
            pivot -= S[k, t] * S[k, t]
        if k < m - 1 and not pivot > 0.0:
            return np.nan
        S[k, k] = np.sqrt(max(pivot, 0.0))
        if k < q2:
            logdet += np.log(pivot)
    # β̂: R_X β = c_β, R_X' the X rows' block of Lₛ
    for c in range(p - 1, -1, -1):
        value = S[m - 1, q2 + c]
        for d in range(c + 1, p):
            value -= S[q2 + d, q2 + c] * beta[d]
        beta[c] = value / S[q2 + c, q2 + c]
    # û of the later terms: L₂₂' u₂ = r_Z − R_ZX β
    for i in range(q2 - 1, -1, -1):
        value = S[m - 1, i]
        for c in range(p):
            value -= S[q2 + c, i] * beta[c]
        for t in range(i + 1, q2):
            value -= S[t, i] * u[n1 + t]
        u[n1 + i] = value / S[i, i]
    # û of the first term: L₁ u₁ = C[:, y] − C[:, X] β − C[:, Z₂] u₂
    for j in range(n1):
        row = C[j]
        value = row[m - 1]
        for c in range(p):
            value -= row[q2 + c] * beta[c]
        for e in range(coupling_ptr[j], coupling_ptr[j + 1]):
            value -= row[coupling_columns[e]] * u[n1 + coupling_columns[e]]
        u[j] = value / roots[j]
    return logdet


@dataclass(frozen=True)
class ScalarTermsSolver:
    """Where the values of a scalar-terms model's cross-products sit, for
    :func:`_solve_scalar_terms`: made once per model by :meth:`of`, shared (never written)."""

    layout: ThetaLayout
    n1: int
    q2: int
    first_positions: np.ndarray
    coupling_ptr: np.ndarray
    coupling_columns: np.ndarray
    coupling_positions: np.ndarray
    coupling_terms: np.ndarray
    dense_rows: np.ndarray
    dense_columns: np.ndarray
    dense_positions: np.ndarray
    dense_term_a: np.ndarray
    dense_term_b: np.ndarray
    column_terms: np.ndarray
    fully_coupled: bool

    @classmethod
    def of(cls, shape: CrossProducts, layout: ThetaLayout) -> ScalarTermsSolver | None:
        """The solver for cross-products shaped as ``shape`` (θ laid out by ``layout``);
        None where a term has more than one column or the work exceeds :data:`MAX_WORK`."""
        sizes = shape.term_sizes
        if len(sizes) == 0 or np.any(sizes != 1):
            return None
        n1 = int(shape.term_levels[0])
        q2, p = shape.q - n1, shape.p
        m = q2 + p + 1
        a, b = shape.slot_term_a, shape.slot_term_b
        first = np.flatnonzero((a == 0) & (b == 0))
        first = first[np.argsort(shape.slot_level_a[first], kind="stable")]
        later_start = shape.column_offsets - n1
        coupled = np.flatnonzero((b == 0) & (a > 0))
        columns = (later_start[a[coupled]] + shape.slot_level_a[coupled]).astype(np.int64)
        order = np.lexsort((columns, shape.slot_level_b[coupled]))
        coupled, columns = coupled[order], columns[order]
        ptr = np.zeros(n1 + 1, dtype=np.int64)
        np.cumsum(np.bincount(shape.slot_level_b[coupled], minlength=n1), out=ptr[1:])
        widths = np.diff(ptr) + p + 1
        if int(np.sum(widths * widths) // 2 + m**3 // 6) > MAX_WORK:
            return None
        dense = np.flatnonzero((a > 0) & (b > 0))
        column_terms = np.repeat(np.arange(1, len(sizes)), shape.term_levels[1:]).astype(np.int64)
        return cls(
            layout=layout,
            n1=n1,
            q2=q2,
            first_positions=shape.slot_offsets[first].astype(np.int64),
            coupling_ptr=ptr,
            coupling_columns=columns,
            coupling_positions=shape.slot_offsets[coupled].astype(np.int64),
            coupling_terms=a[coupled].astype(np.int64),
            dense_rows=(later_start[a[dense]] + shape.slot_level_a[dense]).astype(np.int64),
            dense_columns=(later_start[b[dense]] + shape.slot_level_b[dense]).astype(np.int64),
            dense_positions=shape.slot_offsets[dense].astype(np.int64),
            dense_term_a=a[dense].astype(np.int64),
            dense_term_b=b[dense].astype(np.int64),
            column_terms=column_terms,
            fully_coupled=bool(np.all(widths == m)),
        )

    def solve(self, theta: np.ndarray, cp: CrossProducts) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """û, β̂, log|L|² and (R_X'R_X)⁻¹ at ``theta`` for the cross-products ``cp``: those
        of the model's shape, with X's columns or without them (û for a fixed β, from the
        cross-products of y − Xβ).

        Raises
        ------
        numpy.linalg.LinAlgError
            Where R_X is not numerically positive definite (collinear fixed effects).

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.prepare import prepare
        >>> objective = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"), reml=False).objective
        >>> cp = objective.cross_products
        >>> solver = ScalarTermsSolver.of(cp, objective.layout)
        >>> u, beta, logdet, _ = solver.solve(np.array([0.75]), cp)
        >>> solution = objective.solve(np.array([0.75]))
        >>> bool(np.allclose(u, solution.u) and np.allclose(beta, solution.beta))
        True
        >>> bool(abs(logdet - solution.logdet_L) < 1e-10)
        True
        """
        templates = self.layout.packed_templates(theta)
        scales = templates[self.layout.template_offsets]
        q2, p = self.q2, cp.p
        m = q2 + p + 1
        S = np.empty((m, m))
        u = np.empty(self.n1 + q2)
        beta = np.empty(p)
        logdet = _solve_scalar_terms(
            scales,
            scales[self.column_terms],
            cp.block_values,
            cp.ZtXy,
            cp.XytXy,
            self.first_positions,
            self.coupling_ptr,
            self.coupling_columns,
            self.coupling_positions,
            self.coupling_terms,
            self.dense_rows,
            self.dense_columns,
            self.dense_positions,
            self.dense_term_a,
            self.dense_term_b,
            self.fully_coupled,
            np.empty((self.n1, m)),
            S,
            u,
            beta,
        )
        if not np.isfinite(logdet):
            raise np.linalg.LinAlgError("the fixed-effects block is not numerically positive definite at this θ")
        if not p:
            return u, beta, float(logdet), np.zeros((0, 0))
        rx_inverse = solve_triangular(S[q2 : q2 + p, q2 : q2 + p], np.eye(p), lower=True)
        return u, beta, float(logdet), rx_inverse.T @ rx_inverse
