"""Starting values for θ, from the cross-products (no pass over the rows).

lme4 starts every template at the identity. For models whose random effects are all
intercepts, moment estimates from the ordinary-least-squares residuals start much closer:
with two or more factors, one system of moment equations for all of them (Henderson's
method, which for balanced crossed or nested designs gives the REML estimates themselves);
with one, or where that system fails, a one-way analysis of variance per factor (on InstEval
BOBYQA needs about half the evaluations of lme4's start). For models with slopes it does not
help BOBYQA on the reference cases, so they keep lme4's start there; L-BFGS-B
(``slopes=True``) starts from a moment estimate of every term's covariance — the spread of
per-level least-squares fits to the residuals (on all of a grouping factor's columns at
once) less their average sampling covariance — relative to the residual variance that is
left when every term's share is taken out of the OLS residuals' (sleepstudy starts 0.14
deviance units from the optimum, a 100,000-row crossed design with slopes 2.4).

Everything these estimates need is in the cross-products: the least-squares fit from X'X
and X'y, the residuals' per-level sums as Z'y − Z'X β̂, their sum of squares as y'y − β̂'X'y,
and each level's Gram matrix as its diagonal block of Z'Z. So a start costs the numbers of
levels, not of rows — a model whose rows were streamed past once can start as well as one
held in memory. With prior weights the sums are weighted ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmmfast.crossprod import CrossProducts, level_blocks
from lmmfast.design.random import RandomTerm
from lmmfast.parameters import ThetaLayout

#: Eigenvalues of a moment covariance (over σ²) are raised to at least this: a start inside
#: the parameter space (standard deviations ≥ 0.01 σ), not on its boundary.
EIGENVALUE_FLOOR = 1e-4

#: The residual variance a moment start takes is at least this share of the OLS residuals'.
RESIDUAL_SHARE = 0.05

#: Moment estimates are clipped into this range: they are starts, not estimates.
START_RANGE = (0.01, 10.0)


def _intercept_ratio(counts: np.ndarray, sums: np.ndarray, residual_ss: float, n: int) -> float:
    """sd of the group effect over the residual sd, by one-way ANOVA of the residuals, from
    each level's count and residual sum and the residual sum of squares."""
    levels = len(counts)
    means = sums / counts
    within = (residual_ss - float(np.sum(sums * means))) / max(n - levels, 1)
    if within <= 0.0:
        return START_RANGE[1]
    between = float(np.var(means, ddof=1)) - within * float(np.mean(1.0 / counts))
    return float(np.clip(np.sqrt(max(between, 0.0) / within), *START_RANGE))


def _joint_intercept_ratios(
    cp: CrossProducts, engines: Sequence[int], residual_ss: float, residual_sums: np.ndarray
) -> np.ndarray | None:
    """sd of each intercept term's effect over the residual sd, from one system of moment
    equations for all the terms (Henderson's method for crossed factors), or None where it
    has no solution with a positive residual variance.

    With r the least-squares residuals, M = I − X(X'X)⁻¹X' and P_t the projection onto term
    t's level indicators, each term's between-level sum of squares Q_t = r'P_t r =
    Σⱼ (Z_t'r)ⱼ² / nⱼ and the residual sum of squares r'r have the expectations

        E[Q_t] = Σ_s σ_s² ‖Z_s'M Z_t D_t^{-1/2}‖² + σ² tr(P_t M),
        E[r'r] = Σ_s σ_s² tr(Z_s'M Z_s) + σ² (n − p),

    and Z_s'M Z_t = Z_s'Z_t − F_s'G⁻¹F_t (F = X'Z, G = X'X) needs only the counts the two
    terms' levels share and p × p products. A one-way analysis per term instead counts a
    crossed term's variance as residual and starts the others far from the optimum."""
    terms = len(engines)
    p = cp.p
    G = cp.XytXy[:p, :p]
    counts, columns, solved, sums = [], [], [], []
    for engine in engines:
        rows = slice(int(cp.column_offsets[engine]), int(cp.column_offsets[engine] + cp.term_levels[engine]))
        counts.append(level_blocks(cp, engine)[:, 0, 0])
        columns.append(cp.ZtXy[rows, :p].T)  # F_t = X'Z_t, p × L_t
        solved.append(_least_squares(G, columns[-1]) if p else columns[-1])  # G⁻¹F_t
        sums.append(residual_sums[rows])
    cores = [solved[t] @ (columns[t] / counts[t]).T for t in range(terms)]  # G⁻¹F_t D_t⁻¹F_t'
    outers = [solved[t] @ columns[t].T for t in range(terms)]  # G⁻¹F_t F_t'
    system = np.zeros((terms + 1, terms + 1))
    target = np.zeros(terms + 1)
    for t in range(terms):
        target[t] = float(np.sum(sums[t] * sums[t] / counts[t]))
        system[t, terms] = len(counts[t]) - float(np.trace(cores[t]))
        # s = t: Σⱼ nⱼ²/nⱼ − 2 tr(G⁻¹F F') + tr(core outer)
        system[t, t] = (
            float(np.sum(counts[t])) - 2.0 * float(np.trace(outers[t])) + float(np.sum(cores[t] * outers[t].T))
        )
        system[terms, t] = float(np.sum(counts[t])) - float(np.trace(outers[t]))
    for t in range(terms):
        for s in range(t + 1, terms):
            a, b = engines[t], engines[s]
            slots = np.flatnonzero(
                ((cp.slot_term_a == a) & (cp.slot_term_b == b)) | ((cp.slot_term_a == b) & (cp.slot_term_b == a))
            )
            first = cp.slot_term_a[slots] == a
            level = {t: np.where(first, cp.slot_level_a[slots], cp.slot_level_b[slots])}
            level[s] = np.where(first, cp.slot_level_b[slots], cp.slot_level_a[slots])
            shared = cp.block_values[cp.slot_offsets[slots]]
            # f_s' G⁻¹ f_t at each pair of levels the two terms share
            products = np.sum(columns[s][:, level[s]] * solved[t][:, level[t]], axis=0)
            for one, other in ((t, s), (s, t)):
                share = shared / counts[one][level[one]]
                system[one, other] = (
                    float(np.sum(shared * share))
                    - 2.0 * float(np.sum(share * products))
                    + float(np.sum(cores[one] * outers[other].T))
                )
    system[terms, terms] = cp.n - p
    target[terms] = residual_ss
    try:
        variances = np.linalg.solve(system, target)
    except np.linalg.LinAlgError:
        return None
    if not (np.all(np.isfinite(variances)) and variances[-1] > 0.0):
        return None
    return np.clip(np.sqrt(np.maximum(variances[:-1], 0.0) / variances[-1]), *START_RANGE)


def _moment_covariance(gram: np.ndarray, cross: np.ndarray, residual_ss: float, n: int) -> np.ndarray | None:
    """A term's moment covariance (in the response's units) from each level's Gram matrix
    and residual cross-products: the spread of the per-level least-squares fits less their
    mean sampling covariance, the noise of those fits taken as the pooled variance of the
    residuals within levels (which holds the other factors' effects as well as the
    residual's); None where the levels cannot support one (fewer than two levels with a
    full-rank fit, or no residual left within levels)."""
    k = gram.shape[1]
    # one eigendecomposition per level gives the rank test (np.linalg.matrix_rank's
    # tolerance), the inverse and the least-squares fit
    values, vectors = np.linalg.eigh(gram)
    full_rank = values[:, 0] > values[:, -1] * k * np.finfo(np.float64).eps
    fitted = np.count_nonzero(full_rank)
    if fitted < 2:
        return None
    values, vectors, cross = values[full_rank], vectors[full_rank], cross[full_rank]
    inverse = (vectors / values[:, None, :]) @ vectors.transpose(0, 2, 1)
    coefficients = (inverse @ cross[:, :, None])[:, :, 0]
    within = (residual_ss - float(np.sum(coefficients * cross))) / max(n - fitted * k, 1)
    if not within > 0.0:
        return None
    centered = coefficients - coefficients.mean(axis=0)  # np.cov's arithmetic, without its checks
    spread = (centered.T @ centered) * (1.0 / (fitted - 1))
    covariance = spread - within * inverse.mean(axis=0)
    return covariance if np.all(np.isfinite(covariance)) else None


def _template(covariance: np.ndarray, sigma2: float) -> np.ndarray:
    """Cholesky factor of ``covariance`` / σ², its eigenvalues raised to ``EIGENVALUE_FLOOR``.

    Examples
    --------
    >>> _template(np.array([[4.0]]), 1.0).tolist(), _template(np.array([[-1.0]]), 1.0).tolist()
    ([[2.0]], [[0.01]])
    """
    if covariance.shape == (1, 1):  # a term's single column (``||``): the square root, without LAPACK's overhead
        return np.sqrt(np.maximum(covariance / sigma2, EIGENVALUE_FLOOR))
    values, vectors = np.linalg.eigh(covariance / sigma2)
    values = np.maximum(values, EIGENVALUE_FLOOR)
    return np.linalg.cholesky((vectors * values) @ vectors.T)


def _least_squares(XtX: np.ndarray, Xty: np.ndarray) -> np.ndarray:
    """β̂ from the normal equations, by ``lstsq`` where X'X is numerically singular."""
    try:
        return np.linalg.solve(XtX, Xty)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(XtX, Xty, rcond=None)[0]


def initial_theta(
    layout: ThetaLayout,
    terms: Sequence[RandomTerm],
    cross_products: CrossProducts,
    blocks: Sequence[tuple[int, int]],
    *,
    slopes: bool = False,
) -> np.ndarray:
    """Where the optimiser starts: moment estimates when every term is a random intercept
    (or for every term, with ``slopes``), lme4's identity templates otherwise. ``blocks``
    says where each of the model's ``terms`` sits in the engine's terms, whose
    ``cross_products`` these are (:attr:`lmmfast.design.amalgamate.EngineTerms.blocks`).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> p = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> initial_theta(p.layout, p.terms, p.objective.cross_products, p.engine.blocks).round(2).tolist()
    [0.85]
    """
    start = layout.start
    intercepts_only = all(term.columns == ("(Intercept)",) for term in terms)
    if not (intercepts_only or slopes):
        return start
    cp = cross_products
    p = cp.p
    beta = _least_squares(cp.XytXy[:p, :p], cp.XytXy[:p, p])
    residual_ss = max(float(cp.XytXy[p, p] - beta @ cp.XytXy[:p, p]), 0.0)
    residual_sums = cp.ZtXy[:, p] - cp.ZtXy[:, :p] @ beta  # Z'r
    sigma2 = residual_ss / max(cp.n - p, 1)
    if intercepts_only and len(terms) > 1 and all(int(cp.term_sizes[engine]) == 1 for engine, _ in blocks):
        joint = _joint_intercept_ratios(cp, [engine for engine, _ in blocks], residual_ss, residual_sums)
        if joint is not None:
            start[np.asarray(layout.starts)[: len(terms)]] = joint
            return start
    if intercepts_only:
        for index, (engine, first) in enumerate(blocks):
            gram, cross = _level_sums(cp, engine, residual_sums)
            start[layout.starts[index]] = _intercept_ratio(gram[:, first, first], cross[:, first], residual_ss, cp.n)
        return start
    if not sigma2 > 0.0:
        return start
    # each engine term's levels are fitted on all its columns at once: the model's terms on
    # one factor (``||``) take their blocks of that covariance, as a fit on one term's
    # columns alone would count the others' effects as its own
    covariances: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
    for engine, _ in blocks:
        if engine not in covariances:
            gram, cross = _level_sums(cp, engine, residual_sums)
            covariance = _moment_covariance(gram, cross, residual_ss, cp.n)
            covariances[engine] = None if covariance is None else (covariance, gram.sum(axis=0))
    started = []
    for index, (term, (engine, first)) in enumerate(zip(terms, blocks)):
        found = covariances[engine]
        if found is not None:
            own = slice(first, first + term.k)
            started.append((index, found[0][own, own], found[1][own, own]))
    # the OLS residuals' variance holds every term's (tr(Σ_t Σⱼ Gⱼ) / n a row on average) as
    # well as the residual's own: the templates are relative to the latter (taken to be at
    # least RESIDUAL_SHARE of the former)
    residual = sigma2 - sum(float(np.sum(covariance * gram_sum)) for _, covariance, gram_sum in started) / cp.n
    residual = max(residual, RESIDUAL_SHARE * sigma2)
    for index, covariance, _ in started:
        template = _template(covariance, residual)
        mask = layout.term_of == index
        start[mask] = template[layout.rows[mask], layout.cols[mask]]
    return start


def _level_sums(cp: CrossProducts, engine: int, residual_sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An engine term's per-level Gram matrices (levels, k, k) and residual sums (levels, k)."""
    k, levels = int(cp.term_sizes[engine]), int(cp.term_levels[engine])
    offset = int(cp.column_offsets[engine])
    return level_blocks(cp, engine), residual_sums[offset : offset + levels * k].reshape(levels, k)
