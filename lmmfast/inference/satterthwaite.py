"""Satterthwaite's degrees of freedom for the fixed effects (the method of lmerTest).

The variance parameters are φ = (θ, σ). Their asymptotic covariance is A = 2 H⁻¹, with H the
Hessian of the (REML or ML) deviance in φ — not profiled over σ. For a contrast ℓ (here each
coefficient), with C(φ) = σ² (R_X'R_X)⁻¹(θ) and g_i = ℓ' ∂C/∂φ_i ℓ,

    df = 2 (ℓ'Cℓ)² / (g' A g).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lmmfast.distributions import t_sf
from lmmfast.errors import ConvergenceWarning
from lmmfast.inference.numderiv import hessian, jacobian
from lmmfast.objective import ProfiledObjective

if TYPE_CHECKING:
    from lmmfast.result import LmmFit


def deviance_at(objective: ProfiledObjective, theta: np.ndarray, sigma: float) -> float:
    """The deviance (REML criterion for REML fits) at θ and a given σ, β profiled out."""
    solution = objective.solve(theta)
    cp = objective.cross_products
    value = solution.logdet_L + solution.penalised_rss / sigma**2 + cp.n * np.log(2 * np.pi * sigma**2)
    value -= cp.sum_log_weights
    if objective.reml:
        value += solution.logdet_RX - cp.p * np.log(2 * np.pi * sigma**2)
    return float(value)


def beta_covariance_at(objective: ProfiledObjective, theta: np.ndarray, sigma: float) -> np.ndarray:
    """σ² (R_X'R_X)⁻¹ at θ."""
    solution = objective.solve(theta)
    return solution.beta_covariance * (sigma / solution.sigma) ** 2


#: A progress bar is shown for Satterthwaite's derivatives estimated to take longer than this
#: (seconds), from the fit's typical evaluation.
PROGRESS_AFTER_SECONDS = 5.0


def variance_derivatives(fit: LmmFit) -> tuple[np.ndarray, np.ndarray]:
    """A = 2 H⁻¹ (asymptotic covariance of φ = (θ, σ)) and J = ∂C/∂φ, shape (p, p, len(φ)),
    by finite differences at the estimate: of the analytic gradient of the deviance (4(m + 1)
    evaluations of gradient and covariance together, for m θ, each about three evaluations'
    work) unless the deviance's own differences (about 8(m + 1)² evaluations) cost less. A
    progress bar shows where that should take over ``PROGRESS_AFTER_SECONDS``."""
    objective = fit.model.objective
    phi = np.append(fit.theta, fit.sigma)
    m = len(phi)
    # the gradient's differences where they cost less than the deviance's (a gradient can
    # cost many evaluations: CHOLMOD factors with dense parts)
    gradient_cost = objective.factor.gradient_cost
    by_gradient = objective.has_gradient and 4 * m * gradient_cost < 8 * m * m + 8 * m
    calls, work = (4 * m, gradient_cost) if by_gradient else (8 * m * m + 8 * m, 1.0)
    estimate = calls * work * fit.optsummary.seconds_per_evaluation
    with tqdm(
        total=calls, desc="Satterthwaite df", unit="evaluation", disable=estimate < PROGRESS_AFTER_SECONDS
    ) as bar:
        if by_gradient:
            return _from_gradient(fit, objective, phi, bar)

        def deviance(point: np.ndarray) -> float:
            bar.update(1)
            return deviance_at(objective, point[:-1], point[-1])

        def covariance(point: np.ndarray) -> np.ndarray:
            return beta_covariance_at(objective, point[:-1], point[-1])

        try:
            return 2.0 * np.linalg.pinv(hessian(deviance, phi)), jacobian(covariance, phi)
        except np.linalg.LinAlgError as error:
            return _unavailable(fit, error)


def _from_gradient(
    fit: LmmFit, objective: ProfiledObjective, phi: np.ndarray, bar: tqdm
) -> tuple[np.ndarray, np.ndarray]:
    m, p = len(phi), len(fit.beta)

    def derivatives(point: np.ndarray) -> np.ndarray:
        bar.update(1)
        gradient, covariance = objective.deviance_derivatives(point[:-1], point[-1])
        return np.concatenate([gradient, covariance.ravel()])

    try:
        both = jacobian(derivatives, phi)
    except np.linalg.LinAlgError as error:
        return _unavailable(fit, error)
    hessian = both[:m]
    hessian = 0.5 * (hessian + hessian.T)
    return 2.0 * np.linalg.pinv(hessian), both[m:].reshape(p, p, m)


def _unavailable(fit: LmmFit, error: Exception) -> tuple[np.ndarray, np.ndarray]:
    warnings.warn(
        ConvergenceWarning(
            "Satterthwaite degrees of freedom are not available (reported as NaN): the deviance cannot "
            f"be evaluated next to the estimate ({error}). The fit itself is unaffected; this usually "
            "means redundant random effects (the same term twice) or data of extreme scale."
        ),
        stacklevel=3,
    )
    p, m = len(fit.beta), len(fit.theta) + 1
    return np.full((m, m), np.nan), np.full((p, p, m), np.nan)


def contrast_df(contrast: np.ndarray, C: np.ndarray, A: np.ndarray, J: np.ndarray) -> float:
    """Satterthwaite df of one contrast ℓ: 2 (ℓ'Cℓ)² / (g'Ag), g_i = ℓ' ∂C/∂φ_i ℓ."""
    gradient = np.einsum("a,abi,b->i", contrast, J, contrast)
    denominator = float(gradient @ A @ gradient)
    variance = float(contrast @ C @ contrast)
    if not np.isfinite(denominator):
        return np.nan
    return 2.0 * variance**2 / denominator if denominator > 0 else np.inf


def satterthwaite_table(fit: LmmFit, derivatives: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Estimates, standard errors, Satterthwaite df, t values and two-sided p-values.

    ``derivatives`` is :func:`variance_derivatives` of ``fit`` where already computed.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(float(satterthwaite_table(fit).loc["Days", "df"]), 2)
    17.0
    """
    A, J = variance_derivatives(fit) if derivatives is None else derivatives
    C = fit.beta_covariance
    p = len(fit.beta)
    df = np.array([contrast_df(np.eye(p)[j], C, A, J) for j in range(p)])
    std_error = np.sqrt(np.diag(C))
    t_value = fit.beta / std_error
    p_value = 2.0 * t_sf(np.abs(t_value), df)
    return pd.DataFrame(
        {"estimate": fit.beta, "std_error": std_error, "df": df, "t_value": t_value, "p_value": p_value},
        index=pd.Index(list(fit.fixef_names)),
    )
