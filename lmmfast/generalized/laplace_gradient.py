"""The analytic gradient of the Laplace deviance over (θ, β), for canonical links.

With η = o + Xβ + ZΛu, the penalised deviance g(u) = Σ dᵢ(η) + ‖u‖², its mode ũ, the working
weights W at η̃ and M = Λ'Z'WZΛ + I, the Laplace deviance is f = g(ũ) + log|M| (plus a
constant). For a parameter φ (an entry of θ or of β):

* g: by the envelope theorem only the explicit dependence counts, Σᵢ sᵢ ∂ηᵢ/∂φ at ũ, with
  sᵢ = ∂dᵢ/∂ηᵢ = −2 pᵢ (yᵢ − μᵢ) (pᵢ the prior weight; canonical link);
* log|M|, through Λ: 2 tr(M⁻¹Λ'Z'WZΛ_φ) = 2 Σᵢ wᵢ zᵢ'Λ_φ M⁻¹Λ'zᵢ (θ only; Λ_φ = ∂Λ/∂φ);
* log|M|, through W: Σᵢ w'ᵢ hᵢ dη̃ᵢ/dφ, hᵢ = zᵢ'ΛM⁻¹Λ'zᵢ, w' = dw/dη, and
  dη̃/dφ = ∂η/∂φ + ZΛ dũ/dφ, where differentiating the mode's equation Λ'Z's + 2u = 0 gives
  M dũ/dφ = −Λ'Z'W ∂η/∂φ − ½ Λ_φ'Z's (∂s/∂η = 2w for a canonical link).

M⁻¹ is needed only at the blocks Z'Z stores (:meth:`RandomEffectsFactor.inverse_on_pattern`),
which are exactly the pairs of levels that share a row: one pass over the rows gives every
hᵢ and the Λ-traces; then m + p solves with the factor give dũ/dφ. A non-canonical link
(probit, cloglog) has a mode whose Hessian is not 2M (the observed and expected information
differ), so it gets no gradient here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from lmmfast.generalized.pirls import Mode, Pirls
from lmmfast.objective import scale_by_lambda, scale_by_lambda_t
from lmmfast.parameters import ThetaLayout


@numba.njit(cache=True, nogil=True)
def _row_leverages(
    codes, values, first_column, sizes, slots, pair_terms, pair_starts, templates, template_offsets, inverse, w, h, K
):
    """hᵢ = zᵢ'ΛM⁻¹Λ'zᵢ for every row, and K += Σᵢ wᵢ zᵢₜ (M⁻¹Λ'zᵢ)ₜ' per term (packed like the
    templates), from M⁻¹ at Z'Z's blocks (``inverse``, laid out as the block values)."""
    n = codes.shape[1]
    terms = codes.shape[0]
    width = values.shape[1]
    a = np.empty(width)
    c = np.empty(width)
    for i in range(n):
        for t in range(terms):
            k = sizes[t]
            f = first_column[t]
            lam = template_offsets[t]
            for col in range(k):  # (T' z)[col]: T lower triangular
                acc = 0.0
                for r in range(col, k):
                    acc += templates[lam + r * k + col] * values[i, f + r]
                a[f + col] = acc
                c[f + col] = 0.0
        for pair in range(pair_terms.shape[0]):
            ta = pair_terms[pair, 0]
            tb = pair_terms[pair, 1]
            ka = sizes[ta]
            kb = sizes[tb]
            base = pair_starts[pair] + slots[pair, i] * ka * kb
            fa = first_column[ta]
            fb = first_column[tb]
            for x in range(ka):
                for y in range(kb):
                    entry = inverse[base + x * kb + y]
                    c[fa + x] += entry * a[fb + y]
                    if ta != tb:
                        c[fb + y] += entry * a[fa + x]
        total = 0.0
        for j in range(width):
            total += a[j] * c[j]
        h[i] = total
        weight = w[i]
        for t in range(terms):
            k = sizes[t]
            f = first_column[t]
            lam = template_offsets[t]
            for r in range(k):
                z = weight * values[i, f + r]
                for col in range(k):
                    K[lam + r * k + col] += z * c[f + col]


@numba.njit(cache=True, nogil=True)
def _row_leverages_scalar(codes, values, slots, pair_terms, pair_starts, scales, inverse, w, h, K):
    """:func:`_row_leverages` where every term has one column (random intercepts: the common
    case, written out, without the general kernel's loops over block sizes); ``scales`` the
    terms' θ, K one entry per term."""
    n = codes.shape[1]
    terms = codes.shape[0]
    pairs = pair_terms.shape[0]
    a = np.empty(terms)
    c = np.empty(terms)
    for i in range(n):
        for t in range(terms):
            a[t] = scales[t] * values[i, t]
            c[t] = 0.0
        for pair in range(pairs):
            ta = pair_terms[pair, 0]
            tb = pair_terms[pair, 1]
            entry = inverse[pair_starts[pair] + slots[pair, i]]
            c[ta] += entry * a[tb]
            if ta != tb:
                c[tb] += entry * a[ta]
        total = 0.0
        weight = w[i]
        for t in range(terms):
            total += a[t] * c[t]
            K[t] += weight * values[i, t] * c[t]
        h[i] = total


@numba.njit(cache=True, nogil=True)
def _mode_products(codes, values, first_column, sizes, column_offsets, X, w, slope, leverage_slope, out):
    """``out`` += Z'[s, v, WX] (one row per random effect, 2 + p columns) in one pass."""
    n = codes.shape[1]
    terms = codes.shape[0]
    p = X.shape[1]
    for i in range(n):
        si = slope[i]
        vi = leverage_slope[i]
        wi = w[i]
        for t in range(terms):
            k = sizes[t]
            f = first_column[t]
            base = column_offsets[t] + codes[t, i] * k
            for a in range(k):
                z = values[i, f + a]
                if z == 0.0:
                    continue
                row = base + a
                out[row, 0] += z * si
                out[row, 1] += z * vi
                zw = z * wi
                for c in range(p):
                    out[row, 2 + c] += zw * X[i, c]


def lambda_derivatives(
    layout: ThetaLayout, sizes: np.ndarray, levels: np.ndarray, offsets: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """(Λⱼũ for every θⱼ as the columns of a q × m matrix, and the map v ↦ [Λⱼ'v]ⱼ).

    Λⱼ = ∂Λ/∂θⱼ holds e_r e_c' in every level block of θⱼ's term (T[r, c] = θⱼ).

    Examples
    --------
    >>> layout = ThetaLayout.from_sizes([2])
    >>> D, transposed = lambda_derivatives(layout, np.array([2]), np.array([1]), np.array([0]), np.array([3.0, 5.0]))
    >>> D.tolist()  # θ = (T00, T10, T11): Λⱼu puts u[c] in row r
    [[3.0, 0.0, 0.0], [0.0, 3.0, 5.0]]
    >>> transposed(np.array([1.0, 2.0])).tolist()
    [[1.0, 2.0, 0.0], [0.0, 0.0, 2.0]]
    """
    m = layout.size
    q = len(u)
    spans = []
    for j in range(m):
        t = int(layout.term_of[j])
        k, count, start = int(sizes[t]), int(levels[t]), int(offsets[t])
        spans.append((np.arange(count) * k + start, int(layout.rows[j]), int(layout.cols[j])))
    D = np.zeros((q, m))
    for j, (first, r, c) in enumerate(spans):
        D[first + r, j] = u[first + c]

    def transposed(v: np.ndarray) -> np.ndarray:
        out = np.zeros((q, m))
        for j, (first, r, c) in enumerate(spans):
            out[first + c, j] = v[first + r]
        return out

    return D, transposed


@dataclass(frozen=True)
class _ModeTerms:
    """What both gradients need at a mode (q-vectors in the engine's order)."""

    slope: np.ndarray  # sᵢ = ∂dᵢ/∂ηᵢ per row
    leverage_slope: np.ndarray  # vᵢ = w'ᵢ hᵢ per row
    Zs: np.ndarray  # Z's
    Zv: np.ndarray  # Z'v
    ZWX: np.ndarray  # Z'WX
    D: np.ndarray  # Λⱼũ per θⱼ (q × m)
    transposed: Callable[[np.ndarray], np.ndarray]  # v ↦ [Λⱼ'v]ⱼ
    explicit: np.ndarray  # 2 tr(M⁻¹Λ'Z'WZΛⱼ) per θⱼ


def _mode_terms(pirls: Pirls, theta: np.ndarray, u: np.ndarray, ZWX: np.ndarray | None = None) -> _ModeTerms | None:
    """The rows' pass and the products with Z' at the mode with spherical modes ``u``, from
    PIRLS's factor and row buffers (the mode's); None where there is no selected inverse or
    the link is not canonical. ``ZWX``, Z'WX where the caller has it (the mode's
    cross-products, at the weights of the factor), spares the pass its X columns."""
    family = pirls.family
    if not family.canonical:
        return None
    inverse = pirls.factor.inverse_on_pattern()
    if inverse is None:
        return None
    pattern, layout, shape = pirls.pattern, pirls.layout, pirls.shape
    rows, response, X = pirls.buffers, pirls.response, pirls.X
    w = rows.root_weights**2
    slope = -2.0 * response.weights * (response.y - rows.mu)  # ∂dᵢ/∂ηᵢ
    # dw/dη: p μ(1 − μ)(1 − 2μ) (logit), p μ (log)
    weight_slope = w * (1.0 - 2.0 * rows.mu) if family.name == "binomial" else w
    templates = layout.packed_templates(theta)
    h = np.empty(len(w))
    K = np.zeros_like(templates)
    if pattern.all_scalar:  # K is then one entry per term, as the packed templates
        scales = templates[layout.template_offsets]
        _row_leverages_scalar(
            pattern.codes,
            pattern.values,
            pattern.slots,
            pattern.pair_terms,
            pattern.pair_starts,
            scales,
            inverse,
            w,
            h,
            K,
        )
    else:
        _row_leverages(
            pattern.codes,
            pattern.values,
            pattern.first_column,
            shape.term_sizes,
            pattern.slots,
            pattern.pair_terms,
            pattern.pair_starts,
            templates,
            layout.template_offsets,
            inverse,
            w,
            h,
            K,
        )
    v = weight_slope * h
    if ZWX is not None:
        X = X[:, :0]
    Zt = np.zeros((shape.q, X.shape[1] + 2))
    _mode_products(
        pattern.codes, pattern.values, pattern.first_column, shape.term_sizes, shape.column_offsets, X, w, slope, v, Zt
    )
    D, transposed = lambda_derivatives(layout, shape.term_sizes, shape.term_levels, shape.column_offsets, u)
    positions = layout.template_offsets[layout.term_of] + layout.rows * shape.term_sizes[layout.term_of] + layout.cols
    ZWX = Zt[:, 2:] if ZWX is None else ZWX
    return _ModeTerms(slope, v, Zt[:, 0], Zt[:, 1], ZWX, D, transposed, 2.0 * K[positions])


@dataclass(frozen=True)
class ModeDerivatives:
    """A deviance's gradient at a mode, and how the mode moves with the parameters: the next
    evaluation's PIRLS starts from the modes these predict.

    Attributes
    ----------
    gradient : numpy.ndarray
    mode_slopes : numpy.ndarray
        dũ/dφ, one column per parameter.
    beta_slopes : numpy.ndarray or None
        dβ̃/dθ where β is PIRLS's (``nAGQ = 0``), one column per θ.
    """

    gradient: np.ndarray
    mode_slopes: np.ndarray
    beta_slopes: np.ndarray | None = None


def laplace_gradient(pirls: Pirls, theta: np.ndarray, mode: Mode) -> ModeDerivatives | None:
    """∂f/∂(θ, β) of the Laplace deviance at ``mode``, PIRLS's last solve at ``theta`` and some
    β (its factor and row buffers are the mode's, β within them), and the modes' slopes; None
    where the factor has no selected inverse (the grouped route) or the link is not canonical.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.generalized.family import Family
    >>> from lmmfast.generalized.prepare import prepare_glmm
    >>> model = prepare_glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), Family("binomial"),
    ...                      weights="size")
    >>> deviance = model.deviance.fresh()
    >>> x = np.array([0.6, -1.4, -0.3])
    >>> mode = deviance.mode_at(x)
    >>> laplace_gradient(deviance.pirls, x[:1], mode).gradient.round(3).tolist()
    [-8.921, 0.093, 39.56]
    """
    terms = _mode_terms(pirls, theta, mode.u)
    if terms is None:
        return None
    factor, layout, shape, X = pirls.factor, pirls.layout, pirls.shape, pirls.X
    m, p = layout.size, X.shape[1]
    D = terms.D
    rhs = np.empty((shape.q, m + p))
    rhs[:, :m] = scale_by_lambda_t(layout, shape, theta, factor.zz_times(D)) + 0.5 * terms.transposed(terms.Zs)
    rhs[:, m:] = scale_by_lambda_t(layout, shape, theta, terms.ZWX)
    mode_slopes = -factor.solve_Lt(factor.solve_L(rhs))  # dũ/dφ
    random_part = scale_by_lambda(layout, shape, theta, mode_slopes)  # Λ dũ/dφ, then + Λφ ũ
    random_part[:, :m] += D
    gradient = random_part.T @ terms.Zv
    gradient[:m] += D.T @ terms.Zs + terms.explicit
    gradient[m:] += X.T @ (terms.slope + terms.leverage_slope)
    return ModeDerivatives(gradient, mode_slopes)


def fast_gradient(pirls: Pirls, theta: np.ndarray, mode: Mode) -> ModeDerivatives | None:
    """∂/∂θ of glmer's ``nAGQ = 0`` deviance (the Laplace deviance at the joint modes of u and
    β) at ``mode``, PIRLS's last solve at ``theta`` with β free, and the joint modes' slopes;
    None as for :func:`laplace_gradient`.

    At the joint mode ∂g/∂β = 0 as well, so the envelope and Λ terms are the Laplace
    gradient's for θ; the modes' slopes solve the joint system
    [M, Λ'Z'WX; X'WZΛ, X'WX] [dũ; dβ̃] = −[Λ'Z'WZΛⱼũ + ½Λⱼ'Z's; X'WZΛⱼũ], by the factor and the
    Schur complement X'WX − R'R, R = L⁻¹Λ'Z'WX.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.generalized.family import Family
    >>> from lmmfast.generalized.prepare import prepare_glmm
    >>> model = prepare_glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), Family("binomial"),
    ...                      weights="size")
    >>> deviance = model.deviance.fresh()
    >>> theta = np.array([0.6])
    >>> mode = deviance.pirls.solve(theta, np.zeros(2), free_beta=True)
    >>> fast_gradient(deviance.pirls, theta, mode).gradient.round(3).tolist()
    [-4.395]
    """
    p = pirls.X.shape[1]
    terms = _mode_terms(pirls, theta, mode.u, mode.cross_products.ZtXy[:, :p])
    if terms is None:
        return None
    factor, layout, shape = pirls.factor, pirls.layout, pirls.shape
    D = terms.D
    rhs_u = -(scale_by_lambda_t(layout, shape, theta, factor.zz_times(D)) + 0.5 * terms.transposed(terms.Zs))
    rhs_beta = -(terms.ZWX.T @ D)
    y = factor.solve_L(rhs_u)
    if p:
        R = factor.solve_L(scale_by_lambda_t(layout, shape, theta, terms.ZWX))
        XtWX = mode.cross_products.XytXy[:p, :p]
        beta_slopes = np.linalg.solve(XtWX - R.T @ R, rhs_beta - R.T @ y)
        y = y - R @ beta_slopes
    else:  # no fixed effects (``y ~ 0 + (1 | g)``): the modes alone move
        beta_slopes = np.zeros((0, layout.size))
    mode_slopes = factor.solve_Lt(y)
    random_part = scale_by_lambda(layout, shape, theta, mode_slopes) + D
    gradient = (
        random_part.T @ terms.Zv + beta_slopes.T @ (pirls.X.T @ terms.leverage_slope) + D.T @ terms.Zs + terms.explicit
    )
    return ModeDerivatives(gradient, mode_slopes, beta_slopes)
