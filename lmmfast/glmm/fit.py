"""The one fit path of generalized models: glmer's two stages, then the standard errors.

1. θ by BOBYQA with β estimated inside PIRLS (:meth:`GlmmDeviance.fast`): glmer's
   ``nAGQ = 0``, which stops here with β's covariance from R_X.
2. For ``nAGQ ≥ 1``, (θ, β) together by BOBYQA from stage 1's optimum, PIRLS over u alone
   (:meth:`GlmmDeviance.laplace`, or :meth:`~GlmmDeviance.quadrature` for ``nAGQ > 1``); β's
   covariance is then 2 H⁻¹ restricted to β, H the finite-difference Hessian of that deviance
   over (θ, β) (lme4's ``use.hessian = TRUE``), or R_X's where H is not positive definite.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lmmfast.blas import limit_blas_threads
from lmmfast.control import Control
from lmmfast.diagnostics import report, resolve_checks
from lmmfast.errors import ConvergenceWarning, ModelError, SingularFitWarning
from lmmfast.glmm.deviance import INFEASIBLE, GlmmDeviance
from lmmfast.glmm.pirls import Mode
from lmmfast.glmm.prepare import PreparedGlmm
from lmmfast.inference.numderiv import central_hessian
from lmmfast.optimize import OptSummary, optimize_bounded, optimize_theta
from lmmfast.progress import FitMonitor

#: lme4's step for the Hessian of the deviance over (θ, β) (``deriv12``'s ``delta``).
HESSIAN_STEP = 1e-4

#: BOBYQA's first step in stage 2: this fraction of θ (at least ``THETA_STEP_FLOOR``), and
#: of β's stage-1 standard errors.
THETA_STEP = 0.1
THETA_STEP_FLOOR = 0.05
BETA_STEP = 0.5


@dataclass(frozen=True)
class GlmmSolution:
    """What a generalized fit found: the optimum, its modes and the stages' records.

    Attributes
    ----------
    theta, beta : numpy.ndarray
    beta_covariance : numpy.ndarray
    covariance_source : str
        ``"hessian"`` or ``"RX"``.
    objective : float
        −2 log-likelihood (Laplace), or the quadrature deviance for ``nAGQ > 1``.
    mode : Mode
        The conditional modes at the optimum.
    stages : tuple of OptSummary
        The optimiser's record of each stage run.
    deviance : GlmmDeviance
        The fit's own deviance functions (its PIRLS at the optimum's modes).
    seconds : float
    """

    theta: np.ndarray
    beta: np.ndarray
    beta_covariance: np.ndarray
    covariance_source: str
    objective: float
    mode: Mode
    stages: tuple[OptSummary, ...]
    deviance: GlmmDeviance
    seconds: float


class _Guarded:
    """An objective for the optimiser: PIRLS failures (a diverging linear predictor at an
    extreme trial point) become ``INFEASIBLE`` so the optimiser steps back, except at the
    start, where they are the model's and are raised."""

    def __init__(
        self, function: Callable[[np.ndarray], float], first_call: Callable[[np.ndarray], float] | None = None
    ) -> None:
        self.function = function
        self.first_call = first_call
        self.calls = 0

    def __call__(self, x: np.ndarray) -> float:
        self.calls += 1
        if self.calls == 1:
            return float(self.first_call(x) if self.first_call is not None else self.function(x))
        try:
            return float(self.function(x))
        except ModelError:
            return INFEASIBLE


def fit_glmm(
    prepared: PreparedGlmm,
    control: Control | None = None,
    start: np.ndarray | Sequence[float] | None = None,
    checks: Mapping[str, str] | None = None,
    *,
    progress: bool | None = None,
    verbose: bool = False,
) -> GlmmSolution:
    """Fit a prepared generalized model (both stages, the standard errors, the checks).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.glmm.family import Family
    >>> from lmmfast.glmm.prepare import prepare_glmm
    >>> model = prepare_glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), Family("binomial"),
    ...                      weights="size")
    >>> round(fit_glmm(model).objective, 2)
    186.57
    """
    began = time.perf_counter()
    control = prepared.control if control is None else control
    actions = resolve_checks(checks)
    deviance = prepared.deviance.fresh(control.threads)
    layout = prepared.layout
    monitor = FitMonitor(progress, verbose)
    monitor.start(deviance.pirls.factor.describe())
    with limit_blas_threads(deviance.pirls.factor.blas_threads), contextlib.closing(monitor):
        fast = _Guarded(deviance.fast, lambda theta: deviance.fast(theta, eta=prepared.start_eta))
        theta_start = None if start is None else np.asarray(start, dtype=np.float64)
        first = optimize_theta(fast, layout, start=theta_start, control=control, on_evaluation=monitor.evaluation)
        theta = first.final
        mode = deviance.pirls.solve(theta, deviance.last_beta, free_beta=True)
        beta = mode.beta
        stages: tuple[OptSummary, ...] = (first,)
        objective = first.final_objective
        rx_covariance = mode.rx_inverse if mode.rx_inverse is not None else np.full((len(beta),) * 2, np.nan)
        covariance, source = rx_covariance, "RX"
        if prepared.nagq >= 1:
            m = layout.size
            lower = np.r_[layout.lower_bounds, np.full(len(beta), -np.inf)]
            steps = np.r_[
                np.maximum(THETA_STEP * np.abs(theta), THETA_STEP_FLOOR),
                BETA_STEP * np.sqrt(np.maximum(np.diag(rx_covariance), 1e-12)),
            ]
            second = optimize_bounded(
                _Guarded(deviance),
                lower,
                np.r_[theta, beta],
                control=control,
                initial_step=steps,
                snappable=np.r_[layout.is_diagonal, np.zeros(len(beta), dtype=bool)],
                on_evaluation=monitor.evaluation,
            )
            stages = (first, second)
            theta, beta, objective = second.final[:m], second.final[m:], second.final_objective
            covariance, source = _hessian_covariance(deviance, second.final, m, rx_covariance, actions)
            mode = deviance.mode_at(second.final)
    solution = GlmmSolution(
        theta=theta,
        beta=beta,
        beta_covariance=covariance,
        covariance_source=source,
        objective=objective,
        mode=mode,
        stages=stages,
        deviance=deviance,
        seconds=time.perf_counter() - began,
    )
    _report(solution, prepared, actions)
    return solution


def _hessian_covariance(
    deviance: GlmmDeviance, optimum: np.ndarray, n_theta: int, fallback: np.ndarray, actions: Mapping[str, str]
) -> tuple[np.ndarray, str]:
    """2 H⁻¹ over β from the Hessian of the deviance at the optimum (lme4's ``vcov``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hessian = central_hessian(deviance, optimum, HESSIAN_STEP)
    try:
        inverse = np.linalg.inv(hessian)
        covariance = (inverse + inverse.T)[n_theta:, n_theta:]
        positive = bool(np.all(np.linalg.eigvalsh(covariance) > 0))
    except np.linalg.LinAlgError:
        positive = False
    if positive and np.all(np.isfinite(covariance)):
        return covariance, "hessian"
    report(
        actions["convergence"],
        "The Hessian of the deviance at the optimum is not positive definite, so the standard errors come from "
        "the fixed-effects block of the last PIRLS iteration (R_X), as lme4 falls back; the optimum may be on a "
        "boundary or not a minimum. Check the fit, or simplify the random effects.",
        ConvergenceWarning,
    )
    return fallback, "RX"


def _report(solution: GlmmSolution, prepared: PreparedGlmm, actions: Mapping[str, str]) -> None:
    for stage in solution.stages:
        if not stage.converged:
            report(
                actions["convergence"],
                f"The optimiser stopped before converging ({stage.return_code} after {stage.n_evals} "
                "evaluations); the estimates may be off. Rescale predictors or simplify the random effects.",
                ConvergenceWarning,
            )
            break
    tolerance = solution.stages[-1].control.singular_tolerance
    layout = prepared.layout
    zero = [
        name
        for name, value, diagonal in zip(
            layout.names([t.group for t in prepared.terms], [t.columns for t in prepared.terms]),
            solution.theta,
            layout.is_diagonal,
        )
        if diagonal and value < tolerance
    ]
    if zero:
        report(
            actions["singular"],
            "Boundary (singular) fit: the variance of "
            + ", ".join(zero)
            + " is estimated as zero (or its term's covariance matrix is singular). The estimates are valid, "
            "but the random-effects structure is richer than these data support; consider removing those terms.",
            SingularFitWarning,
        )
