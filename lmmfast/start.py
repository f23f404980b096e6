"""Starting values for θ.

lme4 starts every template at the identity. For models whose random effects are all
intercepts, a one-way analysis-of-variance estimate per grouping factor, computed once from
the ordinary-least-squares residuals, starts much closer (on InstEval BOBYQA needs about
half the evaluations). For models with slopes it does not help BOBYQA on the reference
cases, so they keep lme4's start there; L-BFGS-B (``slopes=True``) starts from a moment
estimate of every term's covariance — the spread of per-level least-squares fits to the
residuals less their average sampling covariance — which saves it a quarter to a third of
its evaluations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmmfast.crossprod import accumulate_outer
from lmmfast.design.random import RandomTerm
from lmmfast.parameters import ThetaLayout

#: Eigenvalues of a moment covariance (over σ²) are raised to at least this: a start inside
#: the parameter space (standard deviations ≥ 0.01 σ), not on its boundary.
EIGENVALUE_FLOOR = 1e-4

#: Moment estimates are clipped into this range: they are starts, not estimates.
START_RANGE = (0.1, 10.0)


def _intercept_ratio(residuals: np.ndarray, term: RandomTerm) -> float:
    """sd of the group effect over the residual sd, by one-way ANOVA of the residuals."""
    counts = np.bincount(term.codes, minlength=term.n_levels).astype(np.float64)
    means = np.bincount(term.codes, weights=residuals, minlength=term.n_levels) / counts
    n = len(residuals)
    within = float(np.sum((residuals - means[term.codes]) ** 2)) / max(n - term.n_levels, 1)
    if within <= 0.0:
        return START_RANGE[1]
    between = float(np.var(means, ddof=1)) - within * float(np.mean(1.0 / counts))
    return float(np.clip(np.sqrt(max(between, 0.0) / within), *START_RANGE))


def _term_template(residuals: np.ndarray, sigma2: float, term: RandomTerm) -> np.ndarray | None:
    """Cholesky factor of the term's moment covariance over σ², or None where the levels
    cannot support one (fewer than two levels with a full-rank fit)."""
    k = term.k
    gram = np.zeros((term.n_levels, k, k))
    cross = np.zeros((term.n_levels, k, 1))
    accumulate_outer(term.codes, term.values, term.values, gram)
    accumulate_outer(term.codes, term.values, residuals[:, None], cross)
    full_rank = np.linalg.matrix_rank(gram) == k
    if np.count_nonzero(full_rank) < 2:
        return None
    gram, cross = gram[full_rank], cross[full_rank]
    coefficients = np.linalg.solve(gram, cross)[:, :, 0]
    covariance = np.atleast_2d(np.cov(coefficients.T, ddof=1)) - sigma2 * np.mean(np.linalg.inv(gram), axis=0)
    values, vectors = np.linalg.eigh(covariance / sigma2)
    values = np.maximum(values, EIGENVALUE_FLOOR)
    return np.linalg.cholesky((vectors * values) @ vectors.T)


def _least_squares(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """β̂ of y on X from the normal equations (X has full column rank; a start needs no more
    accuracy than they give, at a quarter of ``lstsq``'s time on 100k rows), by ``lstsq``
    where X'X is numerically singular."""
    try:
        return np.linalg.solve(X.T @ X, X.T @ y)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(X, y, rcond=None)[0]


def initial_theta(
    layout: ThetaLayout, terms: Sequence[RandomTerm], X: np.ndarray, y: np.ndarray, *, slopes: bool = False
) -> np.ndarray:
    """Where the optimiser starts: moment estimates when every term is a random intercept
    (or for every term, with ``slopes``), lme4's identity templates otherwise.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> p = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> initial_theta(p.layout, p.terms, p.fixed.X, p.fixed.y).round(2).tolist()
    [0.85]
    """
    start = layout.start
    intercepts_only = all(term.columns == ("(Intercept)",) and np.all(term.values == 1.0) for term in terms)
    if not (intercepts_only or slopes):
        return start
    residuals = y - X @ _least_squares(X, y)
    if intercepts_only:
        for index, term in enumerate(terms):
            start[layout.starts[index]] = _intercept_ratio(residuals, term)
        return start
    sigma2 = float(residuals @ residuals) / max(len(y) - X.shape[1], 1)
    if not sigma2 > 0.0:
        return start
    for index, term in enumerate(terms):
        template = _term_template(residuals, sigma2, term)
        if template is not None and np.all(np.isfinite(template)):
            mask = layout.term_of == index
            start[mask] = template[layout.rows[mask], layout.cols[mask]]
    return start
