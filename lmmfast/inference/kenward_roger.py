"""Kenward and Roger's (1997) small-sample inference for the fixed effects, as pbkrtest computes
it (and lmerTest and emmeans use it): the adjusted covariance Φ_A of β̂ and, for a hypothesis
Lβ = 0, the scaled F statistic and its denominator df.

The covariance parameters are those in which V is linear — per random term the variances and
covariances of its columns, then the residual variance — so V = Σ_r σ_r G_r with G_r =
Z_t (I ⊗ E_r) Z_t' (E_r one variance or one covariance of the term's columns) and G = I for the
residual. With Φ = (X'V⁻¹X)⁻¹, P_r = −X'V⁻¹G_rV⁻¹X, Q_rs = X'V⁻¹G_rV⁻¹G_sV⁻¹X and the REML
information I_rs = ½ [tr(V⁻¹G_rV⁻¹G_s) − 2 tr(ΦQ_rs) + tr(ΦP_rΦP_s)], W = I⁻¹ and

    Φ_A = Φ + 2 Φ [Σ_rs W_rs (Q_rs − P_r Φ P_s)] Φ

(the second-derivative term is zero for a V linear in its parameters).

Nothing here is n × n: with Ṽ = V/σ² = I + ZΛΛ'Z' and K = Λ(Λ'Z'ZΛ + I)⁻¹Λ', Ṽ⁻¹ = I − ZKZ',
so every product above is a q- or p-sized expression in the cross-products Z'Z, Z'X, X'X —
dense q × q matrices, which bounds the models this applies to (``MemoryBudgetError`` beyond).
Prior weights enter as √w on the rows of Z and X, after which the residual's G is I.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.linalg as la
import scipy.sparse as sp

from lmmfast.distributions import f_sf, t_sf
from lmmfast.errors import ArgumentError, MemoryBudgetError
from lmmfast.factor.choose import default_memory_budget
from lmmfast.factor.inverse_blocks import mirror_lower
from lmmfast.factor.plan import format_bytes

if TYPE_CHECKING:
    from lmmfast.result import LmmFit

#: Dense q × q matrices held at once while the adjustment is formed.
DENSE_MATRICES = 8


@dataclass(frozen=True)
class Parameter:
    """One covariance parameter: the variance (``a == b``) or covariance of columns ``a`` and
    ``b`` of a random term, or the residual variance (``term`` None)."""

    term: int | None
    a: int = 0
    b: int = 0


@dataclass(frozen=True)
class KenwardRoger:
    """The pieces of Kenward and Roger's adjustment for one fit.

    Attributes
    ----------
    phi : numpy.ndarray
        Φ, the unadjusted covariance of β̂.
    adjusted : numpy.ndarray
        Φ_A, the adjusted covariance.
    P : numpy.ndarray, shape (m, p, p)
        P_r per covariance parameter.
    W : numpy.ndarray, shape (m, m)
        The inverse of the REML information of the covariance parameters.
    """

    phi: np.ndarray
    adjusted: np.ndarray
    P: np.ndarray
    W: np.ndarray

    def test(self, L: np.ndarray, beta: np.ndarray) -> dict[str, float]:
        """The scaled F test of Lβ = 0 (pbkrtest's ``KRmodcomp``): ``F`` (scaled), ``F_unscaled``,
        ``num_df``, ``den_df``, ``scale``, ``p_value``."""
        L = np.atleast_2d(np.asarray(L, dtype=np.float64))
        q = int(np.linalg.matrix_rank(L))
        df2, scaling = self._df_and_scale(L, q)
        estimate = L @ beta
        wald = float(estimate @ np.linalg.solve(L @ self.adjusted @ L.T, estimate))
        unscaled = wald / q
        F = scaling * unscaled
        return {
            "F": F,
            "F_unscaled": unscaled,
            "num_df": float(q),
            "den_df": df2,
            "scale": scaling,
            "p_value": float(f_sf(F, q, df2)),
        }

    def contrast_df(self, ell: np.ndarray) -> float:
        """The Kenward–Roger df of one contrast ℓ'β (pbkrtest's ``get_Lb_ddf``)."""
        return self._df_and_scale(np.atleast_2d(ell), 1)[0]

    def _df_and_scale(self, L: np.ndarray, q: int) -> tuple[float, float]:
        phi = self.phi
        theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        u = np.einsum("ab,rbc,cd->rad", theta @ phi, self.P, phi)  # Θ Φ P_r Φ for every r
        traces = np.einsum("raa->r", u)
        a1 = float(traces @ self.W @ traces)
        a2 = float(np.einsum("rs,rab,sba->", self.W, u, u))
        b = (a1 + 6.0 * a2) / (2.0 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        denominator = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2 - g) / denominator
        v0 = 1.0 + c1 * b
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        v1, v2 = 1.0 - c2 * b, 1.0 - c3 * b
        ratio = 1.0 if abs(1.0 - a2 / q) < 1e-14 and abs(v1) < 1e-14 else (1.0 - a2 / q) / v1
        rho = ratio**2 * v0 / v2 / q
        df2 = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scaling = 1.0 if abs(df2 - 2.0) < 1e-2 else df2 * (1.0 - a2 / q) / (df2 - 2.0)
        return float(df2), float(scaling)


def covariance_parameters(sizes: list[int]) -> list[Parameter]:
    """The parameters of V in pbkrtest's order: per term (of ``sizes`` columns) the lower
    triangle of its covariance matrix by columns, then the residual variance."""
    parameters = [Parameter(t, a, b) for t, k in enumerate(sizes) for b in range(k) for a in range(b, k)]
    return [*parameters, Parameter(None)]


def _apply(parameter: Parameter, block: np.ndarray, k: int) -> np.ndarray:
    """(I ⊗ E) ``block`` for the parameter's E (k × k, symmetric 0/1), ``block`` with L·k rows."""
    rows = block.reshape(-1, k, block.shape[-1])
    out = np.zeros_like(rows)
    out[:, parameter.a] = rows[:, parameter.b]
    if parameter.a != parameter.b:
        out[:, parameter.b] = rows[:, parameter.a]
    return out.reshape(block.shape)


def _pair_trace(first: Parameter, second: Parameter, block: np.ndarray, k1: int, k2: int) -> float:
    """tr((I ⊗ E_r) A (I ⊗ E_s) A') for the block A (L₁k₁ × L₂k₂) of Z'Ṽ⁻¹Z."""
    four = block.reshape(-1, k1, block.shape[1] // k2, k2)
    e_r, e_s = np.zeros((k1, k1)), np.zeros((k2, k2))
    e_r[first.a, first.b] = e_r[first.b, first.a] = 1.0
    e_s[second.a, second.b] = e_s[second.b, second.a] = 1.0
    left = np.einsum("ij,xjyk->xiyk", e_r, four)  # E_r A_xy
    right = np.einsum("xjyk,kl->xjyl", left, e_s)  # E_r A_xy E_s
    return float(np.einsum("xiyl,xiyl->", right, four))  # Σ tr(E_r A E_s A')


@dataclass(frozen=True)
class _Products:
    """The products with Ṽ⁻¹ = (V/σ²)⁻¹ that the adjustment needs, all q- or p-sized:
    A1 = Z'Ṽ⁻¹Z, B1 = Z'Ṽ⁻¹X, B2 = Z'Ṽ⁻²X, X2 = X'Ṽ⁻²X, X3 = X'Ṽ⁻³X, tr Ṽ⁻², and per term the
    diagonal blocks (levels, k, k) of Z'Ṽ⁻²Z."""

    A1: np.ndarray
    B1: np.ndarray
    B2: np.ndarray
    X2: np.ndarray
    X3: np.ndarray
    trace_v2: float
    second_power_blocks: list[np.ndarray]


def _products(terms: list, templates: list[np.ndarray], Z: sp.csr_matrix, X: np.ndarray) -> _Products:
    """Ṽ⁻¹ = I − ZKZ' with K = Λ(Λ'Z'ZΛ + I)⁻¹Λ': every product from Z'Z, Z'X, X'X."""
    offsets = np.concatenate([[0], np.cumsum([t.n_levels * t.k for t in terms])])
    q = int(offsets[-1])
    blocks = [slice(int(offsets[i]), int(offsets[i + 1])) for i in range(len(terms))]
    zz = (Z.T @ Z).toarray()
    zx = np.asarray(Z.T @ X)
    xx = X.T @ X

    def times_lambda(V: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Λ V (Λ' V): block by block, Λ being I ⊗ T per term."""
        out = np.empty(V.shape)
        for block, term, template in zip(blocks, terms, templates):
            rows = np.asarray(V[block]).reshape(term.n_levels, term.k, -1)
            out[block] = np.einsum("ab,lbc->lac", template.T if transpose else template, rows).reshape(-1, V.shape[1])
        return out

    S = times_lambda(zz, transpose=True)  # Λ'Z'Z
    M = times_lambda(S.T, transpose=True)  # Λ'Z'ZΛ, then + I
    M[np.diag_indices(q)] += 1.0
    L = la.cholesky(M, lower=True, overwrite_a=True, check_finite=False)
    del M
    W = la.solve_triangular(L, S, lower=True, overwrite_b=True, check_finite=False)  # Z'Z K Z'Z = W'W
    A1 = la.blas.dsyrk(-1.0, W, beta=1.0, c=zz, trans=1, lower=1)  # Z'Ṽ⁻¹Z = Z'Z − W'W, lower half
    mirror_lower(A1)
    KC = times_lambda(la.solve_triangular(L, W, lower=True, trans=1, overwrite_b=True, check_finite=False))
    del W

    def times_k(V: np.ndarray) -> np.ndarray:
        """K V = Λ M⁻¹ Λ' V."""
        inner = la.solve_triangular(L, times_lambda(V, transpose=True), lower=True, check_finite=False)
        return times_lambda(la.solve_triangular(L, inner, lower=True, trans=1, check_finite=False))

    F = times_k(zx)  # K Z'X, so that Ṽ⁻¹X = X − ZF
    B1 = zx - zz @ F
    B2 = B1 - zz @ times_k(B1)  # N'Z'Ṽ⁻¹X, N = I − KZ'Z
    X2 = xx - 2.0 * zx.T @ F + F.T @ zz @ F
    X3 = xx - zx.T @ F - F.T @ B1 - B1.T @ F + F.T @ A1 @ F
    trace_v2 = X.shape[0] - 2.0 * np.trace(KC) + float(np.sum(KC * KC.T))  # tr (I − ZKZ')²
    # Z'Ṽ⁻²Z = N'Z'Ṽ⁻¹Z: only its diagonal blocks are needed, column block by column block
    N = np.eye(q) - KC
    del KC
    second = [
        np.einsum(
            "xla,xlb->lab",
            N[:, block].reshape(q, term.n_levels, term.k),
            A1[:, block].reshape(q, term.n_levels, term.k),
        )
        for block, term in zip(blocks, terms)
    ]
    return _Products(A1, B1, B2, X2, X3, float(trace_v2), second)


def _derivative_terms(
    parameters: list[Parameter], sizes: list[int], blocks: list[slice], products: _Products, sigma2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P_r, Q_rs and tr(V⁻¹G_rV⁻¹G_s) for every pair of covariance parameters (V = σ²Ṽ: P
    carries σ⁻⁴, Q σ⁻⁶, the traces σ⁻⁴)."""
    A1, B1, B2 = products.A1, products.B1, products.B2
    m, p = len(parameters), B1.shape[1]

    def rows(parameter: Parameter) -> slice:
        return blocks[parameter.term] if parameter.term is not None else slice(0)

    # (I ⊗ E_r) Z_t'Ṽ⁻¹X per term parameter (none for the residual)
    Y = [_apply(r, B1[rows(r)], sizes[r.term]) if r.term is not None else B1[:0] for r in parameters]
    P = np.empty((m, p, p))
    for i, r in enumerate(parameters):
        P[i] = -(products.X2 if r.term is None else B1[rows(r)].T @ Y[i]) / sigma2**2
    Q = np.empty((m, m, p, p))
    traces = np.empty((m, m))
    for i, r in enumerate(parameters):
        for j in range(i, m):
            s = parameters[j]
            if r.term is None and s.term is None:
                Q[i, j], traces[i, j] = products.X3, products.trace_v2
            elif r.term is None or s.term is None:
                # a term's parameter u against the residual's: Q_{u,res} = (D_u Z'Ṽ⁻¹X)'Z'Ṽ⁻²X, and
                # Q_{res,u} is its transpose
                u, k = (s, j) if r.term is None else (r, i)
                one_way = Y[k].T @ B2[rows(u)]
                Q[i, j] = one_way if s.term is None else one_way.T
                block = products.second_power_blocks[u.term or 0]
                traces[i, j] = float(block[:, u.a, u.b].sum() + (block[:, u.b, u.a].sum() if u.a != u.b else 0.0))
            else:
                Q[i, j] = Y[i].T @ A1[rows(r), rows(s)] @ Y[j]
                traces[i, j] = _pair_trace(r, s, A1[rows(r), rows(s)], sizes[r.term], sizes[s.term])
            Q[j, i] = Q[i, j].T
            traces[j, i] = traces[i, j]
    return P, Q / sigma2**3, traces / sigma2**2


def _adjustment(phi: np.ndarray, P: np.ndarray, Q: np.ndarray, traces: np.ndarray) -> KenwardRoger:
    """W from the REML information, and Φ_A = Φ + 2Φ[Σ W_rs (Q_rs − P_rΦP_s)]Φ."""
    phi_p = np.einsum("ab,rbc->rac", phi, P)  # Φ P_r
    information = traces - 2.0 * np.einsum("ab,rsba->rs", phi, Q) + np.einsum("rab,sba->rs", phi_p, phi_p)
    if np.min(np.abs(np.linalg.eigvalsh(information))) > 1e-10:
        W = 2.0 * np.linalg.inv(information)
    else:
        W = 2.0 * np.linalg.pinv(information)
    W = (W + W.T) / 2.0
    correction = np.einsum("rs,rsab->ab", W, Q) - np.einsum("rs,rab,bc,scd->ad", W, P, phi, P)
    adjusted = phi + 2.0 * phi @ correction @ phi
    return KenwardRoger(phi=phi, adjusted=(adjusted + adjusted.T) / 2.0, P=P, W=W)


def kenward_roger(fit: LmmFit) -> KenwardRoger:
    """Kenward and Roger's adjustment for ``fit`` (a REML fit).

    Raises
    ------
    ArgumentError
        For a fit by maximum likelihood (the adjustment is REML's).
    MemoryBudgetError
        When the dense q × q matrices would not fit in the memory budget.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> kr = kenward_roger(fit)
    >>> np.sqrt(np.diag(kr.adjusted)).round(4).tolist()  # pbkrtest: 6.8246, 1.5458
    [6.8246, 1.5458]
    """
    if not fit.reml:
        raise ArgumentError(
            "Kenward–Roger's adjustment is defined for REML fits, and this fit is by maximum likelihood; "
            "fit the model with reml=True, or use ddf='satterthwaite'."
        )
    model = fit.model
    model.require_rows("Kenward–Roger (which forms Z and X)")
    terms = model.terms
    sizes = [t.k for t in terms]
    offsets = np.concatenate([[0], np.cumsum([t.n_levels * t.k for t in terms])])
    q = int(offsets[-1])
    needed = DENSE_MATRICES * 8 * q * q
    budget = model.control.memory_budget or default_memory_budget()
    if needed > budget:
        raise MemoryBudgetError(
            f"Kenward–Roger needs dense matrices of the {q} random effects (about {format_bytes(needed)}), more "
            f"than the memory budget ({format_bytes(budget)}); use ddf='satterthwaite', which needs none."
        )
    Z = sp.hstack([t.z_block() for t in terms]).tocsr()
    X = model.fixed.X
    if model.weights is not None:
        root = np.sqrt(model.weights)
        Z, X = sp.diags(root) @ Z, X * root[:, None]
    products = _products(terms, [r.template for r in fit.terms], Z, X)
    blocks = [slice(int(offsets[i]), int(offsets[i + 1])) for i in range(len(terms))]
    P, Q, traces = _derivative_terms(covariance_parameters(sizes), sizes, blocks, products, fit.sigma**2)
    return _adjustment(fit.beta_covariance, P, Q, traces)


def kenward_roger_table(fit: LmmFit, adjustment: KenwardRoger) -> pd.DataFrame:
    """Estimates with Kenward–Roger's adjusted standard errors, df, t values and two-sided
    p-values (lmerTest's ``summary(m, ddf = "Kenward-Roger")``).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(float(kenward_roger_table(fit, kenward_roger(fit)).loc["Days", "df"]), 2)
    17.0
    """
    p = len(fit.beta)
    df = np.array([adjustment.contrast_df(np.eye(p)[j]) for j in range(p)])
    std_error = np.sqrt(np.diag(adjustment.adjusted))
    t_value = fit.beta / std_error
    return pd.DataFrame(
        {
            "estimate": fit.beta,
            "std_error": std_error,
            "df": df,
            "t_value": t_value,
            "p_value": 2.0 * t_sf(np.abs(t_value), df),
        },
        index=pd.Index(list(fit.fixef_names)),
    )
