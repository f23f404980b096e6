"""The one pass over the rows that a generalized model makes per PIRLS iteration.

From the linear predictor η it forms the mean μ = g⁻¹(η), the square root of the working
weight √w = √(prior weight) μ'(η) / √V(μ), the working residual (y − μ)/μ'(η) and the
deviance residuals. Everything else a PIRLS iteration needs (the weighted cross-products)
follows from these arrays; nothing is quadratic in n. R clamps μ away from 0 and 1 in the
same places (``binomial()$linkinv``, ``poisson()$linkinv``) and so does this module, so that
extreme linear predictors give R's numbers, not infinities.

The arithmetic is numpy's, element-wise over whole arrays: its exp and log are vectorised,
where numba (without Intel's SVML) calls the scalar C library once per row, several times
slower. The −2 log-likelihood is the deviance plus a constant (:func:`loglik_offset`), so the
pass forms no normalising constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy.special import gammaln, ndtr

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


def mean_and_derivative(eta: np.ndarray, link: str) -> tuple[np.ndarray, np.ndarray]:
    """(μ, dμ/dη) with R's clamping.

    Examples
    --------
    >>> mu, derivative = mean_and_derivative(np.array([0.0, 40.0]), "logit")
    >>> mu.tolist(), derivative.tolist()
    ([0.5, 0.9999999999999998], [0.25, 2.220446049250313e-16])
    """
    if link == "logit":
        odds = np.exp(np.clip(eta, -LOGIT_THRESHOLD - 1.0, LOGIT_THRESHOLD + 1.0))  # beyond ±30: set below
        mu = odds / (1.0 + odds)
        derivative = mu * (1.0 - mu)
        if np.max(np.abs(eta), initial=0.0) > LOGIT_THRESHOLD:
            low, high = eta < -LOGIT_THRESHOLD, eta > LOGIT_THRESHOLD
            mu[low] = EPSILON / (1.0 + EPSILON)
            mu[high] = 1.0 / (1.0 + EPSILON)
            derivative[low | high] = EPSILON
        return mu, derivative
    if link == "probit":
        clamped = np.clip(eta, -PROBIT_THRESHOLD, PROBIT_THRESHOLD)
        return ndtr(clamped), np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi), EPSILON)
    if link == "cloglog":
        with np.errstate(over="ignore"):
            mu = np.clip(-np.expm1(-np.exp(eta)), EPSILON, 1.0 - EPSILON)
        capped = np.exp(np.minimum(eta, CLOGLOG_CAP))
        with np.errstate(over="ignore", invalid="ignore"):
            derivative = np.maximum(capped * np.exp(-capped), EPSILON)
        return mu, derivative
    with np.errstate(over="ignore"):  # an infinite mean is an infinite deviance: PIRLS steps back
        mu = np.maximum(np.exp(eta), EPSILON)
    return mu, mu.copy()


def saturated_terms(y: np.ndarray, family: Family) -> np.ndarray:
    """The part of each deviance residual that does not involve μ, per unit of prior weight:
    y log y + (1 − y) log(1 − y) (binomial), y log y − y (Poisson), with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        y_log_y = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
        if family.name == "binomial":
            other = 1.0 - y
            return y_log_y + np.where(other > 0, other * np.log(np.where(other > 0, other, 1.0)), 0.0)
    return y_log_y - y


def deviance_residuals(
    y: np.ndarray, mu: np.ndarray, weights: np.ndarray, saturated: np.ndarray, family: str
) -> np.ndarray:
    """R's ``family$dev.resids``: 2 w (saturated − y log μ − (1 − y) log(1 − μ)) for binomial,
    2 w (saturated − y log μ + μ) for Poisson."""
    if family == "binomial":
        return 2.0 * weights * (saturated - y * np.log(mu) - (1.0 - y) * np.log1p(-mu))
    return 2.0 * weights * (saturated - y * np.log(mu) + mu)


@dataclass
class RowBuffers:
    """The per-row arrays of the last pass."""

    eta: np.ndarray
    mu: np.ndarray
    root_weights: np.ndarray
    working_residuals: np.ndarray
    deviance_residuals: np.ndarray

    @classmethod
    def of(cls, n: int) -> RowBuffers:
        return cls(*(np.zeros(n) for _ in range(5)))


def reweight(eta: np.ndarray, response: Response, family: Family, saturated: np.ndarray, out: RowBuffers) -> float:
    """Fill ``out``'s μ, √w, working and deviance residuals for linear predictor ``eta``;
    return the sum of the deviance residuals."""
    mu, derivative = mean_and_derivative(eta, family.link)
    # an overflowing mean (a Poisson η beyond 709, at a trial point far out) gives an infinite
    # or undefined deviance, and PIRLS steps back from it: no warning is due
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        variance = family.variance(mu)
        out.mu[:] = mu
        np.multiply(np.sqrt(response.weights / variance), derivative, out=out.root_weights)
        np.divide(response.y - mu, derivative, out=out.working_residuals)
        out.deviance_residuals[:] = deviance_residuals(response.y, mu, response.weights, saturated, family.name)
    return float(np.sum(out.deviance_residuals))


def minus_two_loglik(mu: np.ndarray, response: Response, family: Family) -> float:
    """−2 Σ log p(y | μ) with R's normalising constants (R's ``family$aic`` without its
    2 × parameters): binomial terms (w/m) log dbinom(round(m y), round(m), μ), Poisson terms
    w log dpois(y, μ)."""
    k, m, weight = response.successes, response.trials, response.aic_weights
    if family.name == "binomial":
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = (
                gammaln(m + 1.0)
                - gammaln(k + 1.0)
                - gammaln(m - k + 1.0)
                + np.where(k > 0, k * np.log(mu), 0.0)
                + np.where(m - k > 0, (m - k) * np.log1p(-mu), 0.0)
            )
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = -mu - gammaln(k + 1.0) + np.where(k > 0, k * np.log(mu), 0.0)
    return float(-2.0 * np.sum(np.where(weight == 0.0, 0.0, weight * log_p)))


def loglik_offset(response: Response, family: Family, saturated: np.ndarray) -> float:
    """−2 Σ log p(y | μ) − Σ dᵢ(μ): the same for every μ (the deviance is −2 log-likelihood
    less that of the saturated model, and R's normalising constants do not involve μ), so
    PIRLS forms the deviance residuals alone. Evaluated at the weighted mean of y, kept
    inside the parameter space.

    Examples
    --------
    >>> import pandas as pd
    >>> from lmmfast.generalized.response import build_response
    >>> poisson = Family("poisson")
    >>> r = build_response(poisson, pd.DataFrame({"y": [0.0, 2.0]}), "y", None, np.zeros(2))
    >>> round(loglik_offset(r, poisson, saturated_terms(r.y, poisson)), 6)  # 2 Σ (log y! − y log y + y)
    2.613706
    """
    limit = 1e-3
    mu = np.clip(np.full(len(response.y), np.average(response.y, weights=response.weights)), limit, None)
    if family.name == "binomial":
        mu = np.minimum(mu, 1.0 - limit)
    deviance = deviance_residuals(response.y, mu, response.weights, saturated, family.name)
    return minus_two_loglik(mu, response, family) - float(np.sum(deviance))


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
