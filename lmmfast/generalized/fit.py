"""The one fit path of generalized models: glmer's two stages, then the standard errors.

1. θ with β estimated inside PIRLS (:meth:`GlmmDeviance.fast`), by L-BFGS-B with its
   analytic gradient where it has one (:meth:`GlmmDeviance.fast_and_gradient`), else by
   BOBYQA: glmer's ``nAGQ = 0``, which stops here with β's covariance from R_X.
2. For ``nAGQ ≥ 1``, (θ, β) together from stage 1's optimum, PIRLS over u alone
   (:meth:`GlmmDeviance.laplace`, or :meth:`~GlmmDeviance.quadrature` for ``nAGQ > 1``): by
   L-BFGS-B with the Laplace deviance's analytic gradient where it has one (canonical links,
   :mod:`lmmfast.generalized.laplace_gradient`), else by BOBYQA. β's covariance is then
   2 H⁻¹ restricted to β, H the Hessian of that deviance over (θ, β) by finite differences of
   the gradient or of the deviance (lme4's ``use.hessian = TRUE``), or R_X's where H is not
   positive definite.

Stage 2 works in whitened coordinates, β = β₁ + C γ with C C' stage 1's (R_X'R_X)⁻¹: the
deviance's curvature in γ is then close to the identity and free of the correlations between
the fixed effects, so either optimiser needs a fraction of the evaluations it needs in β
(docs/performance.md). The Hessian is taken in the same coordinates.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar, cast

import numpy as np

from lmmfast.blas import limit_blas_threads
from lmmfast.control import Control
from lmmfast.diagnostics import report, resolve_checks
from lmmfast.errors import ConvergenceWarning, ModelError, SavedFitError, SeparationWarning, SingularFitWarning
from lmmfast.fit import checked_start
from lmmfast.generalized.deviance import INFEASIBLE, GlmmDeviance
from lmmfast.generalized.pirls import Mode
from lmmfast.generalized.prepare import PreparedGlmm
from lmmfast.generalized.start import first_stage_start
from lmmfast.inference.numderiv import central_derivatives, gradient_differences
from lmmfast.optimize import optimize_bounded, optimize_theta
from lmmfast.optsummary import OptSummary
from lmmfast.parameters import ThetaLayout
from lmmfast.progress import FitMonitor

Value = TypeVar("Value")

#: The Hessian's steps: lme4's (``deriv12``'s ``delta``) in θ, and a hundredth of a standard
#: error in the whitened fixed effects, where lme4's step would leave the second differences
#: at the level of PIRLS's rounding; between 1e-3 and 3e-2 the standard errors do not move.
THETA_HESSIAN_STEP = 1e-4
WHITENED_HESSIAN_STEP = 1e-2

#: BOBYQA's first step in stage 2: this fraction of θ (at least ``THETA_STEP_FLOOR``), and
#: this in the whitened fixed effects (units of their stage-1 standard errors).
THETA_STEP = 0.05
THETA_STEP_FLOOR = 0.025
WHITENED_STEP = 0.25


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
    newton_gain : float or None
        The check of the optimum: the deviance a Newton step from it would still gain, from the
        Hessian's differences (None for ``nAGQ = 0`` or where the Hessian is not positive
        definite).
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
    newton_gain: float | None = None


class GlmmRecord(Protocol):
    """What a saved generalized fit records of its solution (a loaded
    :class:`~lmmfast.GlmmResult` is one)."""

    @property
    def theta(self) -> np.ndarray: ...
    @property
    def beta(self) -> np.ndarray: ...
    @property
    def beta_covariance(self) -> np.ndarray: ...
    @property
    def covariance_source(self) -> str: ...
    @property
    def objective(self) -> float: ...
    @property
    def stages(self) -> tuple[OptSummary, ...]: ...
    @property
    def fit_seconds(self) -> float: ...
    @property
    def newton_gain(self) -> float | None: ...


class _Guarded(Generic[Value]):
    """An objective for the optimiser: PIRLS failures (a diverging linear predictor at an
    extreme trial point) become ``INFEASIBLE`` (``infeasible``'s answer for a function that
    returns a gradient too) so the optimiser steps back, except at the first call, where they
    are the model's and are raised."""

    def __init__(
        self, function: Callable[[np.ndarray], Value], infeasible: Callable[[np.ndarray], Value] | None = None
    ) -> None:
        self.function = function
        self.infeasible = infeasible
        self.calls = 0

    def __call__(self, x: np.ndarray) -> Value:
        self.calls += 1
        try:
            return self.function(x)
        except ModelError:
            if self.calls == 1:
                raise
            return self.infeasible(x) if self.infeasible is not None else cast(Value, INFEASIBLE)


def _infeasible_with_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
    return INFEASIBLE, np.zeros(len(x))


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
    >>> from lmmfast.generalized.family import Family
    >>> from lmmfast.generalized.prepare import prepare_glmm
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
    monitor.start(deviance.pirls.plan())
    with limit_blas_threads(deviance.pirls.factor.blas_threads), contextlib.closing(monitor):
        # PIRLS starts from the GLM's fit at the first θ, here, and warm ever after
        if start is None:
            theta_start = first_stage_start(prepared, deviance)
        else:
            theta_start = checked_start(start, prepared)
            deviance.fast(theta_start, eta=prepared.start_eta)
        fast = _Guarded(deviance.fast)
        fast_and_gradient = None
        if deviance.has_fast_gradient and control.optimizer != "bobyqa":
            fast_and_gradient = _Guarded(deviance.fast_and_gradient, _infeasible_with_gradient)
        first = optimize_theta(
            fast,
            layout,
            start=theta_start,
            value_and_gradient=fast_and_gradient,
            control=_first_stage_control(control, prepared.nagq),
            on_evaluation=monitor.evaluation,
        )
        theta = first.final
        mode = deviance.pirls.solve(theta, deviance.last_beta, free_beta=True)
        beta = mode.beta
        stages: tuple[OptSummary, ...] = (first,)
        objective = first.final_objective
        rx_covariance = mode.rx_inverse if mode.rx_inverse is not None else np.full((len(beta),) * 2, np.nan)
        covariance, source = rx_covariance, "RX"
        gain: float | None = None
        if prepared.nagq >= 1:
            second, covariance, source, gain = _second_stage(
                deviance, layout, theta, beta, rx_covariance, control, actions, monitor
            )
            stages = (first, second)
            m = layout.size
            theta, beta, objective = second.final[:m], second.final[m:], second.final_objective
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
        newton_gain=gain,
    )
    _report(solution, prepared, actions)
    report_separation(deviance.pirls.buffers.mu, prepared, actions)
    return solution


#: A restored fit's deviance at the saved optimum must match the saved one to this relative
#: tolerance (the same data agree to PIRLS's tolerance; other data do not).
RESTORE_TOLERANCE = 1e-6


def restore_glmm(prepared: PreparedGlmm, record: GlmmRecord) -> GlmmSolution:
    """The solution a fit of ``prepared``'s model found, from its saved ``record``, with
    ``prepared``'s deviance functions at the optimum: one evaluation, no optimisation (how a
    saved fit is restored with its data).

    Raises
    ------
    SavedFitError
        When the deviance at the saved optimum is not the saved one: other data.
    """
    deviance = prepared.deviance.fresh(prepared.control.threads)
    with limit_blas_threads(deviance.pirls.factor.blas_threads):
        if prepared.nagq == 0:
            value = deviance.fast(record.theta, eta=prepared.start_eta)
            mode = deviance.pirls.solve(record.theta, deviance.last_beta, free_beta=True)
        else:
            parameters = np.concatenate([record.theta, record.beta])
            value = deviance(parameters)
            mode = deviance.mode_at(parameters)
    if not abs(value - record.objective) <= RESTORE_TOLERANCE * max(1.0, abs(record.objective)):
        raise SavedFitError(
            f"These data do not give the saved fit: at its optimum the deviance is {value:.6f}, and it was "
            f"{record.objective:.6f}; load it with the data it was fitted to (the same rows, values and column types)."
        )
    return GlmmSolution(
        theta=record.theta,
        beta=record.beta,
        beta_covariance=record.beta_covariance,
        covariance_source=record.covariance_source,
        objective=record.objective,
        mode=mode,
        stages=record.stages,
        deviance=deviance,
        seconds=record.fit_seconds,
        newton_gain=record.newton_gain,
    )


#: Stage 2 is not restarted: in whitened coordinates BOBYQA's first run ends at the optimum
#: (the check of the optimum confirms it), and a restart costs 2m + 1 evaluations.
SECOND_STAGE_RESTARTS = 0

#: ... and stops once an iteration gains less than this fraction of the deviance: on large
#: data the deviance's own rounding is near it (1e6 units at a million Bernoulli rows), and the
#: absolute tolerance alone keeps BOBYQA sampling noise. The check of the optimum still applies.
SECOND_STAGE_RELATIVE_TOLERANCE = 1e-12

#: Where stage 2 follows, stage 1 only finds its start: BOBYQA stops there once an iteration
#: gains less than this fraction of the deviance, and is not restarted.
FIRST_STAGE_RELATIVE_TOLERANCE = 1e-5


def _first_stage_control(control: Control, nagq: int) -> Control:
    """Stage 1's settings: the fit's own for ``nagq=0`` (its optimum is the answer), looser
    before a second stage, which reaches the same optimum from a rougher start with fewer
    evaluations in all."""
    if nagq == 0:
        return control
    return replace(control, ftol_rel=max(control.ftol_rel, FIRST_STAGE_RELATIVE_TOLERANCE), restarts=0)


def _second_stage(
    deviance: GlmmDeviance,
    layout: ThetaLayout,
    theta: np.ndarray,
    beta: np.ndarray,
    rx_covariance: np.ndarray,
    control: Control,
    actions: Mapping[str, str],
    monitor: FitMonitor,
) -> tuple[OptSummary, np.ndarray, str, float | None]:
    """(θ, β) by BOBYQA in whitened coordinates from stage 1's optimum, β's covariance and the
    check of the optimum (:func:`hessian_covariance`); the record's points are in (θ, β)."""
    m = layout.size
    monitor.label = "θ, β"
    try:
        whitening = np.linalg.cholesky(rx_covariance)
    except np.linalg.LinAlgError:
        whitening = np.diag(np.sqrt(np.maximum(np.diag(rx_covariance), 1e-12)))
    if not np.all(np.isfinite(whitening)):  # no R_X from stage 1: the fixed effects' own units
        whitening = np.eye(len(beta))

    def to_natural(x: np.ndarray) -> np.ndarray:
        return np.r_[x[:m], beta + whitening @ x[m:]]

    def in_whitened(x: np.ndarray) -> float:
        return deviance(to_natural(x))

    with_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None
    if deviance.has_gradient and control.optimizer != "bobyqa":

        def with_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, gradient = deviance.laplace_and_gradient(to_natural(x))
            return value, np.r_[gradient[:m], whitening.T @ gradient[m:]]

    def canonical(x: np.ndarray) -> np.ndarray:
        return np.r_[layout.canonical(x[:m]), x[m:]]

    record = optimize_bounded(
        _Guarded(in_whitened),
        np.r_[layout.lower_bounds, np.full(len(beta), -np.inf)],
        np.r_[theta, np.zeros(len(beta))],
        control=replace(
            control,
            restarts=SECOND_STAGE_RESTARTS,
            ftol_rel=max(control.ftol_rel, SECOND_STAGE_RELATIVE_TOLERANCE),
        ),
        initial_step=np.r_[np.maximum(THETA_STEP * np.abs(theta), THETA_STEP_FLOOR), np.full(len(beta), WHITENED_STEP)],
        snappable=np.r_[layout.is_diagonal, np.zeros(len(beta), dtype=bool)],
        on_evaluation=lambda x, value, seconds: monitor.evaluation(to_natural(x), value, seconds),
        value_and_gradient=with_gradient,
        canonical=canonical,
    )
    derivatives: tuple[np.ndarray, np.ndarray] | None = None
    if with_gradient is not None:
        steps = np.r_[np.full(m, THETA_HESSIAN_STEP), np.full(len(beta), WHITENED_HESSIAN_STEP)]
        optimum, value, gradient, hessian = newton_polish(with_gradient, record.final, record.final_objective, steps)
        # a step across a template diagonal's 0 (the same deviance mirrored) is not taken
        if np.array_equal(canonical(optimum), optimum):
            derivatives = (gradient, hessian)
            if value < record.final_objective:
                record = replace(record, final=optimum, final_objective=value)
    covariance, source, gain = hessian_covariance(
        _Guarded(in_whitened),
        record.final,
        m,
        whitening,
        rx_covariance,
        actions,
        control.convergence_tolerance,
        derivatives,
    )
    natural = replace(
        record,
        initial=to_natural(record.initial),
        final=to_natural(record.final),
        trace_theta=np.array([to_natural(x) for x in record.trace_theta]),
    )
    return natural, covariance, source, gain


#: Newton steps :func:`newton_polish` takes at most, and the gain in deviance units below which
#: it takes none: each step costs the Hessian again, and an optimum within 1e-4 of the deviance
#: is within √(2 × 1e-4) ≈ 0.014 standard errors of the exact one in every direction.
POLISH_STEPS = 3
POLISH_GAIN = 1e-4


def newton_polish(
    value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: np.ndarray,
    value: float,
    steps: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The gradient and Hessian (differences of the gradient, 2m + 1 evaluations) at the
    optimiser's point ``x`` (deviance ``value``), and, while a Newton step would still gain more
    than ``POLISH_GAIN`` and does lower the deviance, that step and the derivatives again at
    its end. Returns (point, value, gradient, Hessian). L-BFGS-B can stop where an iteration
    gains little (its relative tolerance, on deviances of a million units) while its own
    curvature estimate hides what is left (a few thousandths of a unit on a million Bernoulli
    rows); the exact Hessian, needed for the standard errors anyway, shows it.

    Examples
    --------
    >>> def f(v):
    ...     return float(v @ v + v[0] ** 4), 2 * v + np.array([4 * v[0] ** 3, 0.0])
    >>> x, value, gradient, _ = newton_polish(f, np.array([0.1, -0.2]), 0.0501, np.full(2, 1e-4))
    >>> x.round(4).tolist(), round(value, 6)  # one step: a second would gain less than 1e-4
    ([0.0038, 0.0], 1.4e-05)
    """
    x = np.asarray(x, dtype=np.float64)
    for attempt in range(POLISH_STEPS + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gradient, hessian = gradient_differences(value_and_gradient, x, steps)
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            break
        gain = 0.5 * float(gradient @ step)
        if attempt == POLISH_STEPS or not (np.isfinite(gain) and gain > POLISH_GAIN):
            break
        trial = x - step
        trial_value = value_and_gradient(trial)[0]
        if not trial_value < value:
            break
        x, value = trial, trial_value
    return x, value, gradient, hessian


def hessian_covariance(
    function: Callable[[np.ndarray], float],
    optimum: np.ndarray,
    n_theta: int,
    whitening: np.ndarray,
    fallback: np.ndarray,
    actions: Mapping[str, str],
    tolerance: float,
    derivatives: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, str, float | None]:
    """2 H⁻¹ over β from the Hessian of the deviance at the optimum (lme4's ``vcov``), H
    taken in the whitened coordinates (θ, γ) and carried back to β = β₁ + C γ; and the check
    of the optimum from the same differences: the deviance a Newton step would still gain,
    ½ g'H⁻¹g, reported when above ``tolerance`` (None where H is not positive definite).
    The gradient and H are ``derivatives`` where given (:func:`newton_polish`'s), else from
    differences of ``function`` (m² + m + 1 evaluations)."""
    if derivatives is not None:
        gradient, hessian = derivatives
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            steps = np.r_[np.full(n_theta, THETA_HESSIAN_STEP), np.full(len(optimum) - n_theta, WHITENED_HESSIAN_STEP)]
            gradient, hessian = central_derivatives(function, optimum, steps)
    gain: float | None = None
    try:
        inverse = np.linalg.inv(hessian)
        whitened = (inverse + inverse.T)[n_theta:, n_theta:]
        covariance = whitening @ whitened @ whitening.T
        positive = bool(np.all(np.linalg.eigvalsh(whitened) > 0)) and bool(np.all(np.linalg.eigvalsh(hessian) > 0))
        gain = float(0.5 * gradient @ inverse @ gradient) if positive else None
    except np.linalg.LinAlgError:
        positive = False
    if gain is not None and gain > tolerance:
        report(
            actions["convergence"],
            f"The optimum failed its check: a Newton step from it would lower the deviance by {gain:.3g} (more than "
            f"{tolerance:g}); the estimates may be slightly off. Rescale the predictors or simplify the random "
            "effects.",
            ConvergenceWarning,
        )
    if positive and np.all(np.isfinite(covariance)):
        return covariance, "hessian", gain
    report(
        actions["convergence"],
        "The Hessian of the deviance at the optimum is not positive definite, so the standard errors come from "
        "the fixed-effects block of the last PIRLS iteration (R_X), as lme4 falls back; the optimum may be on a "
        "boundary or not a minimum. Check the fit, or simplify the random effects.",
        ConvergenceWarning,
    )
    return fallback, "RX", gain


#: R's ``glm.fit`` calls fitted probabilities within this of 0 or 1 "numerically 0 or 1".
SEPARATION_EPSILON = 10 * np.finfo(np.float64).eps


def report_separation(mu: np.ndarray, prepared: PreparedGlmm, actions: Mapping[str, str]) -> None:
    """Warn, as R's ``glm`` does, of fitted probabilities numerically 0 or 1 (or Poisson
    means numerically 0): the mark of separation."""
    if prepared.family.name == "binomial":
        extreme = int(np.sum((mu < SEPARATION_EPSILON) | (mu > 1 - SEPARATION_EPSILON)))
        what = "probabilities numerically 0 or 1"
    else:
        extreme = int(np.sum(mu < SEPARATION_EPSILON))
        what = "means numerically 0"
    if extreme:
        report(
            actions["separation"],
            f"Fitted {what} for {extreme} of {len(mu)} observations: some predictor or level separates the "
            "outcomes (complete or quasi-complete separation), so some fixed effects grow without bound and their "
            "standard errors are meaningless. Look for a level or range with only one outcome and drop or merge it, "
            "or simplify the model; see help(lmmfast.SeparationWarning).",
            SeparationWarning,
        )


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
