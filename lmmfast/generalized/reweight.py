"""The one pass over the rows that a generalized model makes per PIRLS iteration.

From the linear predictor η it forms, row by row, the mean μ = g⁻¹(η), the square root of the
working weight √w = √(prior weight) μ'(η) / √V(μ), the working residual (y − μ)/μ'(η), the
deviance residual and the row's −2 log-likelihood (R's ``family$aic`` terms, normalising
constants included). Everything else a PIRLS iteration needs (the weighted cross-products)
follows from these arrays; nothing is quadratic in n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np

from lmmfast.design.random import RandomTerm
from lmmfast.generalized.family import Family
from lmmfast.generalized.response import Response

#: R's ``.Machine$double.eps``, the floor of μ'(η) and of μ for the log and cloglog links.
EPSILON = float(np.finfo(np.float64).eps)
#: R's logit link treats |η| > 30 as saturated.
LOGIT_THRESHOLD = 30.0
#: R's probit link clamps η at ±``-qnorm(.Machine$double.eps)``.
PROBIT_THRESHOLD = 8.125890664701906
#: R's cloglog link caps η at 700 in μ'(η).
CLOGLOG_CAP = 700.0


@numba.njit(cache=True, nogil=True)
def _mean(eta: float, link: int) -> tuple[float, float]:
    """(μ, dμ/dη) with R's clamping; links: 0 logit, 1 probit, 2 cloglog, 3 log."""
    if link == 0:
        if eta < -LOGIT_THRESHOLD:
            odds = EPSILON
        elif eta > LOGIT_THRESHOLD:
            odds = 1.0 / EPSILON
        else:
            odds = math.exp(eta)
        mu = odds / (1.0 + odds)
        if eta > LOGIT_THRESHOLD or eta < -LOGIT_THRESHOLD:
            return mu, EPSILON
        opexp = 1.0 + math.exp(eta)
        return mu, math.exp(eta) / (opexp * opexp)
    if link == 1:
        clamped = min(max(eta, -PROBIT_THRESHOLD), PROBIT_THRESHOLD)
        mu = 0.5 * math.erfc(-clamped / math.sqrt(2.0))
        density = math.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi)
        return mu, max(density, EPSILON)
    if link == 2:
        mu = max(min(-math.expm1(-math.exp(eta)), 1.0 - EPSILON), EPSILON)
        capped = min(eta, CLOGLOG_CAP)
        return mu, max(math.exp(capped) * math.exp(-math.exp(capped)), EPSILON)
    value = max(math.exp(eta), EPSILON)
    return value, value


@numba.njit(cache=True, nogil=True)
def _y_log_y(y: float, mu: float) -> float:
    return y * math.log(y / mu) if y != 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _deviance_residual(y: float, mu: float, weight: float, family: int) -> float:
    """R's ``family$dev.resids`` for one row (0 binomial, 1 Poisson)."""
    if family == 0:
        return 2.0 * weight * (_y_log_y(y, mu) + _y_log_y(1.0 - y, 1.0 - mu))
    if y > 0.0:
        return 2.0 * weight * (y * math.log(y / mu) - (y - mu))
    return 2.0 * mu * weight


@numba.njit(cache=True, nogil=True)
def _minus_two_loglik(mu: float, successes: float, trials: float, aic_weight: float, family: int) -> float:
    """One row's term of R's ``family$aic``: −2 × its log-probability with the normalising
    constants (binomial coefficient, log y!), times R's weight for the term."""
    if aic_weight == 0.0:
        return 0.0
    if family == 0:
        value = math.lgamma(trials + 1.0) - math.lgamma(successes + 1.0) - math.lgamma(trials - successes + 1.0)
        if successes > 0.0:
            value += successes * math.log(mu)
        if trials - successes > 0.0:
            value += (trials - successes) * math.log1p(-mu)
        return -2.0 * aic_weight * value
    value = -mu - math.lgamma(successes + 1.0)
    if successes > 0.0:
        value += successes * math.log(mu)
    return -2.0 * aic_weight * value


@numba.njit(cache=True, nogil=True)
def reweight(
    eta: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    family: int,
    link: int,
    mu: np.ndarray,
    root_weights: np.ndarray,
    working_residuals: np.ndarray,
    deviance_residuals: np.ndarray,
) -> float:
    """Fill μ, √w, the working and the deviance residuals for linear predictor ``eta``;
    return the sum of the deviance residuals."""
    total = 0.0
    for i in range(eta.shape[0]):
        m, derivative = _mean(eta[i], link)
        if family == 0:
            variance = m * (1.0 - m)
        else:
            variance = m
        mu[i] = m
        root_weights[i] = math.sqrt(weights[i]) * derivative / math.sqrt(variance)
        working_residuals[i] = (y[i] - m) / derivative
        residual = _deviance_residual(y[i], m, weights[i], family)
        deviance_residuals[i] = residual
        total += residual
    return total


@numba.njit(cache=True, nogil=True)
def minus_two_loglik(
    mu: np.ndarray, successes: np.ndarray, trials: np.ndarray, aic_weights: np.ndarray, family: int
) -> float:
    """−2 Σ log p(y | μ) with R's normalising constants (R's ``family$aic`` without its
    2 × parameters)."""
    total = 0.0
    for i in range(mu.shape[0]):
        total += _minus_two_loglik(mu[i], successes[i], trials[i], aic_weights[i], family)
    return total


def loglik_offset(response: Response, family: Family) -> float:
    """−2 Σ log p(y | μ) − Σ dᵢ(μ): the same for every μ (the deviance is −2 log-likelihood
    less that of the saturated model, and R's normalising constants do not involve μ), so
    PIRLS forms the deviance residuals alone. Evaluated at the mean of y, clipped inside
    the parameter space.

    Examples
    --------
    >>> from lmmfast.generalized.response import build_response
    >>> import pandas as pd
    >>> r = build_response(Family("poisson"), pd.DataFrame({"y": [0.0, 2.0]}), "y", None, np.zeros(2))
    >>> round(loglik_offset(r, Family("poisson")), 6)  # 2 Σ (log y! − y log y + y)
    2.841117
    """
    family_code, _ = family.codes
    limit = 1e-3
    mu = np.clip(np.full(len(response.y), np.average(response.y, weights=response.weights)), limit, None)
    if family.name == "binomial":
        mu = np.minimum(mu, 1.0 - limit)
    residuals = np.empty_like(mu)
    deviance_residuals_at_mu(response.y, mu, response.weights, family_code, residuals)
    aic = minus_two_loglik(mu, response.successes, response.trials, response.aic_weights, family_code)
    return float(aic - np.sum(residuals))


@numba.njit(cache=True, nogil=True)
def deviance_residuals_at_mu(y: np.ndarray, mu: np.ndarray, weights: np.ndarray, family: int, out: np.ndarray) -> None:
    """The deviance residuals for means ``mu``."""
    for i in range(mu.shape[0]):
        out[i] = _deviance_residual(y[i], mu[i], weights[i], family)


@numba.njit(cache=True, nogil=True)
def deviance_residuals_at(
    eta: np.ndarray, y: np.ndarray, weights: np.ndarray, family: int, link: int, out: np.ndarray
) -> None:
    """The deviance residuals alone, for the quadrature's shifted linear predictors."""
    for i in range(eta.shape[0]):
        m, _ = _mean(eta[i], link)
        out[i] = _deviance_residual(y[i], m, weights[i], family)


@numba.njit(cache=True, nogil=True)
def _add_term(codes: np.ndarray, values: np.ndarray, modes: np.ndarray, out: np.ndarray) -> None:
    k = values.shape[1]
    for i in range(codes.shape[0]):
        acc = 0.0
        level = codes[i]
        for j in range(k):
            acc += values[i, j] * modes[level, j]
        out[i] += acc


def add_random_part(terms: Sequence[RandomTerm], b: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """``out += Z b`` for random effects ``b`` in the engine's order (term after term,
    level-major), ``offsets`` each term's first column.

    Examples
    --------
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 1, 1]), np.ones((3, 1)))
    >>> out = np.zeros(3)
    >>> add_random_part([t], np.array([1.0, 2.0]), np.array([0]), out)
    >>> out.tolist()
    [1.0, 2.0, 2.0]
    """
    for term, offset in zip(terms, offsets):
        modes = b[int(offset) : int(offset) + term.n_levels * term.k].reshape(term.n_levels, term.k)
        _add_term(term.codes, term.values, np.ascontiguousarray(modes), out)
