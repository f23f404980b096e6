"""Starting values for θ.

lme4 starts every template at the identity. For models whose random effects are all
intercepts, a one-way analysis-of-variance estimate per grouping factor, computed once from
the ordinary-least-squares residuals, starts much closer: on InstEval it halves the number
of evaluations (155 → 84). For models with slopes it did not help on the reference cases,
so they keep lme4's start.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmmfast.design.random import RandomTerm
from lmmfast.parameters import ThetaLayout

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


def initial_theta(layout: ThetaLayout, terms: Sequence[RandomTerm], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where the optimiser starts: moment estimates when every term is a random intercept,
    lme4's identity templates otherwise.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> p = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> initial_theta(p.layout, p.terms, p.fixed.X, p.fixed.y).round(2).tolist()
    [0.85]
    """
    start = layout.start
    if not all(term.columns == ("(Intercept)",) and np.all(term.values == 1.0) for term in terms):
        return start
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    residuals = y - X @ beta
    for index, term in enumerate(terms):
        start[layout.starts[index]] = _intercept_ratio(residuals, term)
    return start
