"""The one fit path: optimise a prepared model, check the optimum, build the result.

Every fit goes through :func:`fit_prepared` — :func:`lmmfast.lmm`, the ML refits of
:func:`lmmfast.anova` and of the profile, refits to a new response — so each gets the same
convergence check, the same warnings and the same record. Bootstrap replicates, many
responses and simulations, which read only the estimates, take :func:`fit_estimates`: the
same optimisation and solve, without the result around them.
Each fit optimises its own copy of the factor (:meth:`~lmmfast.factor.RandomEffectsFactor.fresh`),
which its result then owns: no two results share a factor's numbers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lmmfast.blas import limit_blas_threads
from lmmfast.control import Control
from lmmfast.convergence import ConvergenceCheck, check_convergence
from lmmfast.curvature import measured_curvature, start_curvature
from lmmfast.diagnostics import report, resolve_checks
from lmmfast.errors import ArgumentError, ConvergenceWarning, ModelError, SavedFitError, SingularFitWarning
from lmmfast.objective import INFEASIBLE, ProfiledObjective, Solution
from lmmfast.optimize import choose_optimizer, optimize_theta
from lmmfast.optsummary import OptSummary
from lmmfast.prepare import PreparedModel, with_reml, with_response
from lmmfast.progress import FitMonitor
from lmmfast.result import LmmFit
from lmmfast.start import initial_theta


def blas_threads_for(objective: ProfiledObjective) -> contextlib.AbstractContextManager:
    """A context that limits BLAS to the threads the factor asks for (its plan's, capped by
    :attr:`Control.threads` when the fit took its fresh copy); none for a compiled criterion,
    which calls no BLAS (and whose whole fit costs about what setting a limit does)."""
    if objective.envelope is not None:
        return contextlib.nullcontext()
    return limit_blas_threads(objective.factor.blas_threads)


#: The settings a model is prepared with; a fit cannot change them.
PREPARED_SETTINGS = ("factorization", "coupling", "merge_terms", "memory_budget")


def gradient_for(
    objective: ProfiledObjective, optimizer: str
) -> Callable[[np.ndarray], tuple[float, np.ndarray]] | None:
    """The objective's ``value_and_gradient`` where ``optimizer`` (``"auto"``, ``"bobyqa"``,
    ``"lbfgsb"``) resolves to L-BFGS-B for it (:func:`lmmfast.optimize.choose_optimizer`),
    else None (BOBYQA)."""
    if optimizer == "auto":
        optimizer = choose_optimizer(
            objective.layout.size,
            objective.has_gradient,
            objective.factor.dense_size,
            objective.cross_products.q,
            objective.factor.gradient_cost,
            compiled=objective.envelope is not None,
        )
    return objective.value_and_gradient if optimizer == "lbfgsb" and objective.has_gradient else None


def fit_prepared(
    prepared: PreparedModel,
    control: Control | None = None,
    start: np.ndarray | Sequence[float] | None = None,
    checks: Mapping[str, str] | None = None,
    *,
    progress: bool | None = None,
    verbose: bool = False,
    curvature: np.ndarray | None = None,
) -> LmmFit:
    """Fit a prepared model: optimise θ, check the optimum, and build the result.

    Parameters
    ----------
    prepared : PreparedModel
        From :func:`lmmfast.prepare.prepare` (or :func:`~lmmfast.prepare.with_reml`,
        :func:`~lmmfast.prepare.with_response`). Left as it was: the fit optimises a fresh
        copy of its factor.
    control : Control, optional
        The optimiser's settings (default: the ones the model was prepared with); its
        factorisation settings (``PREPARED_SETTINGS``) must be the prepared model's.
    start : array, optional
        Starting θ (default: moment estimates where L-BFGS-B runs or every term is an
        intercept, lme4's identity templates otherwise).
    checks : dict, optional
        What to do about the convergence and singular-fit checks, as in :func:`lmmfast.lmm`.
    progress : bool, optional
        A progress bar: always (True), never (False), or once the fit turns out slow (None).
    verbose : bool, default False
        Print the engine plan and every evaluation (lme4's ``verbose``).
    curvature : numpy.ndarray, optional
        The diagonal curvature at a nearby optimum, from the convergence check of the fit a
        refit starts from (:func:`optimize_theta`'s).

    Returns
    -------
    LmmFit

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.prepare import prepare
    >>> fit = fit_prepared(prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy")))
    >>> round(fit.objective, 3), fit.converged
    (1743.628, True)
    """
    began = time.perf_counter()
    control = prepared.control if control is None else _checked_control(control, prepared)
    actions = resolve_checks(checks)
    start = None if start is None else checked_start(start, prepared)
    objective = prepared.objective.fresh(control.threads)
    model = replace(prepared, objective=objective, control=control)
    monitor = FitMonitor(progress, verbose)
    monitor.start(objective.describe())
    with blas_threads_for(objective), contextlib.closing(monitor):
        record = _optimize(model, start, None if monitor.silent else monitor.evaluation, curvature)
        convergence = None
        if record.converged and actions["convergence"] != "ignore":
            quasi_newton = None
            if record.gradient is not None and record.inverse_hessian is not None:
                quasi_newton = (record.gradient, record.inverse_hessian)
            convergence = check_convergence(
                objective,
                model.layout,
                record.final,
                record.final_objective,
                quasi_newton,
                control.convergence_tolerance,
            )
        result = assemble(model, record, convergence, began)
    _report_checks(result, model, record, convergence, actions)
    return result


def _optimize(
    model: PreparedModel,
    start: np.ndarray | None,
    on_evaluation: Callable[[np.ndarray, float, float], None] | None,
    curvature: np.ndarray | None = None,
) -> OptSummary:
    """Optimise θ for ``model`` (which owns its objective's copy) from ``start`` (default:
    :func:`lmmfast.start.initial_theta`; ``curvature``: a nearby optimum's, as
    :func:`lmmfast.optimize.optimize_theta` takes it): the optimisation every fit runs."""
    objective, control = model.objective, model.control
    value_and_gradient = gradient_for(objective, control.optimizer)
    cp, blocks = objective.cross_products, model.engine.blocks
    if start is None:
        start = initial_theta(model.layout, model.terms, cp, blocks, slopes=value_and_gradient is not None)
    measured = np.zeros(len(start), dtype=bool) if curvature is None else np.isfinite(curvature) & (curvature > 0)
    if value_and_gradient is not None and measured.ndim == 1 and not measured.all():
        # where a nearby optimum's curvature was not measured (a θ on the boundary, or a check
        # that took L-BFGS-B's instead), the start's own approximation stands in
        estimate = start_curvature(model.layout, model.terms, cp, blocks, start)
        curvature = estimate if curvature is None else np.where(measured, curvature, estimate)
    record = optimize_theta(
        objective,
        model.layout,
        start=start,
        value_and_gradient=value_and_gradient,
        control=control,
        on_evaluation=on_evaluation,
        gradient_into=objective.gradient_into() if value_and_gradient is not None else None,
        curvature=curvature,
    )
    if record.final_objective >= INFEASIBLE:
        raise ModelError(
            "The objective could not be evaluated at any point the optimiser tried (the fixed-effects "
            "block was never positive definite); check the fixed effects for near-collinear columns "
            "and the response for extreme values."
        )
    return record


@dataclass(frozen=True)
class Estimates:
    """A fit's estimates without the rest of its result: what bootstrap replicates,
    simulations and many responses are read for (:func:`fit_estimates`).

    Attributes
    ----------
    beta, beta_covariance : numpy.ndarray
        Fixed effects and their covariance.
    sigma : float
    theta : numpy.ndarray
    objective : float
        The criterion at the optimum (−2 log-likelihood for ML).
    n_evals : int
    converged : bool
        Whether the optimiser stopped on its tolerances (no finite-difference check is run).
    singular : bool
        Some template diagonal is below the control's ``singular_tolerance``.
    """

    beta: np.ndarray
    beta_covariance: np.ndarray
    sigma: float
    theta: np.ndarray
    objective: float
    n_evals: int
    converged: bool
    singular: bool


def fit_estimates(
    prepared: PreparedModel, start: np.ndarray | None = None, curvature: np.ndarray | None = None
) -> Estimates:
    """The estimates :func:`fit_prepared` would give, by the same optimisation and solve,
    without the result around them (fitted values, residuals, the term tables) and without
    checks or warnings: its callers report failed fits together.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.prepare import prepare
    >>> model = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> estimates, fit = fit_estimates(model), fit_prepared(model)
    >>> bool(estimates.objective == fit.objective and np.array_equal(estimates.beta, fit.beta))
    True
    """
    return _estimates(replace(prepared, objective=prepared.objective.fresh(prepared.control.threads)), start, curvature)


def response_estimates(
    prepared: PreparedModel, y: np.ndarray, start: np.ndarray | None = None, curvature: np.ndarray | None = None
) -> Estimates:
    """:func:`fit_estimates` of ``prepared``'s model for the response ``y``
    (:func:`~lmmfast.prepare.with_response`), on the objective of its own that the new
    response's model already has: what bootstrap replicates, power simulations and many
    responses fit, without a second copy of the objective each.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.prepare import prepare, with_response
    >>> model = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> y = 2.0 * model.fixed.y
    >>> bool(response_estimates(model, y).objective == fit_estimates(with_response(model, y)).objective)
    True
    """
    return _estimates(with_response(prepared, y), start, curvature)


def _estimates(model: PreparedModel, start: np.ndarray | None, curvature: np.ndarray | None) -> Estimates:
    """The estimates of ``model``, whose objective is the caller's own to run."""
    objective = model.objective
    with blas_threads_for(objective):
        record = _optimize(model, start, None, curvature)
        solution = _solve(model, record)
    theta = record.final
    return Estimates(
        beta=solution.beta,
        beta_covariance=solution.beta_covariance,
        sigma=solution.sigma,
        theta=theta,
        objective=record.final_objective,
        n_evals=record.n_evals,
        converged=record.converged,
        singular=bool(np.any(theta[model.layout.is_diagonal] < model.control.singular_tolerance)),
    )


def _checked_control(control: Control, prepared: PreparedModel) -> Control:
    if not isinstance(control, Control):
        raise ArgumentError(f"control must be a lmmfast.Control, got {type(control).__name__}.")
    for name in PREPARED_SETTINGS:
        if getattr(control, name) != getattr(prepared.control, name):
            raise ArgumentError(
                f"{name} is fixed when the model is prepared ({getattr(prepared.control, name)!r}); prepare it "
                f"with Control({name}={getattr(control, name)!r}) instead."
            )
    return control


def checked_start(start: np.ndarray | Sequence[float], prepared: PreparedModel | Any) -> np.ndarray:
    """``start`` as θ for ``prepared`` (a linear or a generalized model), or an
    :class:`ArgumentError` naming θ's entries."""
    try:
        theta = np.asarray(start, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"start must be an array of numbers (θ), got {type(start).__name__}.") from None
    layout = prepared.layout
    if theta.shape != (layout.size,) or not np.all(np.isfinite(theta)):
        names = ", ".join(layout.names([t.group for t in prepared.terms], [t.columns for t in prepared.terms]))
        got = theta.tolist() if theta.size <= 10 else theta.shape
        raise ArgumentError(f"start must be {layout.size} finite numbers, one per θ ({names}), got {got}.")
    return theta


def assemble(
    prepared: PreparedModel, record: OptSummary, convergence: ConvergenceCheck | None = None, began: float | None = None
) -> LmmFit:
    """The result at the optimum ``record`` reports: one solve, one pass over the rows.

    Raises
    ------
    ModelError
        When the model cannot be solved at that optimum (redundant random effects, data of
        extreme scale).
    """
    return LmmFit.from_solution(prepared, record, _solve(prepared, record), convergence, began)


def _solve(prepared: PreparedModel, record: OptSummary) -> Solution:
    try:
        return prepared.objective.solve(record.final)
    except np.linalg.LinAlgError as error:
        raise ModelError(
            f"The model cannot be solved at the optimum the optimiser reported ({error}). The random "
            "effects are redundant (the same term twice, or a term that duplicates another) or the data "
            "are of extreme scale; remove the redundant terms or rescale the predictors."
        ) from error


#: A restored fit's criterion at the saved θ must match the saved one to this relative
#: tolerance (the same data refactored, perhaps on other threads or another path, agree far
#: closer; other data do not).
RESTORE_TOLERANCE = 1e-6


def restore_prepared(prepared: PreparedModel, record: OptSummary, convergence: ConvergenceCheck | None) -> LmmFit:
    """The fit at the optimum ``record`` reports, from one evaluation of the criterion and no
    optimisation (MixedModels.jl's ``restoreoptsum!``): how a saved fit is restored with its
    data. The record and the check of the optimum are the saved ones.

    Raises
    ------
    SavedFitError
        When the criterion at the saved θ is not the saved one: ``prepared`` was not built
        from the data (or the model) the record was fitted to.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.prepare import prepare
    >>> data = lmmfast.datasets.load("sleepstudy")
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    >>> again = restore_prepared(prepare(fit.formula, data), fit.optsummary, fit.convergence)
    >>> bool(np.allclose(again.beta, fit.beta, rtol=1e-10))
    True
    """
    theta, expected = record.final, record.final_objective
    value = prepared.objective(theta)
    if not abs(value - expected) <= RESTORE_TOLERANCE * max(1.0, abs(expected)):
        raise SavedFitError(
            f"These data do not give the saved fit: at its θ the criterion is {value:.6f}, and it was {expected:.6f}; "
            "load it with the data it was fitted to (the same rows, values and column types)."
        )
    return assemble(prepared, record, convergence)


def _report_checks(
    result: LmmFit,
    prepared: PreparedModel,
    record: OptSummary,
    convergence: ConvergenceCheck | None,
    actions: Mapping[str, str],
) -> None:
    if not record.converged:
        report(
            actions["convergence"],
            f"The optimiser stopped before converging ({record.return_code} after {record.n_evals} "
            "evaluations); the estimates may be off. Rescale predictors or simplify the random effects.",
            ConvergenceWarning,
        )
    elif convergence is not None and not convergence.ok:
        report(
            actions["convergence"],
            f"The optimum failed its finite-difference check ({convergence.message}); the estimates may be "
            "slightly off. Simplify the random effects, or compare with factorization='cholmod'.",
            ConvergenceWarning,
        )
    if result.singular:
        tolerance = record.control.singular_tolerance
        zero = [
            name
            for name, value, diagonal in zip(result.theta_names, result.theta, prepared.layout.is_diagonal)
            if diagonal and value < tolerance
        ]
        report(
            actions["singular"],
            "Boundary (singular) fit: the variance of "
            + ", ".join(zero)
            + " is estimated as zero (or its term's covariance matrix is singular). The estimates are valid, "
            "but the random-effects structure is richer than these data support; consider removing those terms.",
            SingularFitWarning,
        )


def refit_ml(fit: LmmFit, checks: Mapping[str, str] | None = None) -> LmmFit:
    """The fit's model by maximum likelihood (the fit itself if it already is), from its θ̂
    scaled by its curvature there (:func:`curvature_of`: REML's and ML's barely differ).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(refit_ml(fit).objective, 3)
    1751.939
    """
    if not fit.reml:
        return fit
    return fit_prepared(with_reml(fit.model, False), start=fit.theta, checks=checks, curvature=curvature_of(fit))


def refit_response(
    fit: LmmFit, y: np.ndarray, checks: Mapping[str, str] | None = None, *, progress: bool | None = None
) -> LmmFit:
    """The fit's model for a new response on the same rows, from its θ̂ (the design, the
    cross-products of X and Z and the factor's set-up are reused).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> abs(refit_response(fit, fit.model.fixed.y).objective - fit.objective) < 1e-6
    True
    """
    return fit_prepared(
        with_response(fit.model, y), start=fit.theta, checks=checks, progress=progress, curvature=curvature_of(fit)
    )


def curvature_of(fit: LmmFit) -> np.ndarray | None:
    """The diagonal curvature the fit's convergence check measured at its optimum (None
    where the check took L-BFGS-B's curvature instead, or did not run): how a refit from its
    θ̂ scales θ."""
    return None if fit.convergence is None else fit.convergence.curvature


def optimum_curvature(fit: LmmFit) -> np.ndarray | None:
    """What many refits from the fit's θ̂ (bootstrap replicates) start with: the whole
    Hessian of its criterion there (:func:`lmmfast.curvature.measured_curvature`, 2
    evaluations per θ); the fit's objective is left factored at θ̂ with its gradient's
    log-determinant part formed there, which its copies for new responses keep (the costly
    part of an evaluation, and none of the response's business).

    The diagonal of :func:`curvature_of` instead where the criterion has no gradient; for a
    singular fit, where at a boundary optimum the Hessian is flat along the variances at 0
    and a poor guide to the replicates' optima (on kb07's singular models it cost
    evaluations); and for a compiled criterion, whose evaluations cost microseconds: there
    the Hessian's square root, formed for each replicate, costs more than the few
    evaluations it saves.

    Examples
    --------
    >>> import lmmfast
    >>> kb07 = lmmfast.datasets.load("kb07")
    >>> fit = lmmfast.lmm("RTtrunc ~ S + P + C + (1 | subj) + (1 + P | item)", kb07, reml=False)
    >>> optimum_curvature(fit).shape  # its criterion is not compiled, its optimum not singular
    (4, 4)
    """
    objective = fit.model.objective
    value_and_gradient = gradient_for(objective, fit.model.control.optimizer)
    if value_and_gradient is None or fit.singular or objective.envelope is not None:
        return curvature_of(fit)
    with blas_threads_for(objective):
        hessian = measured_curvature(value_and_gradient, fit.theta)
        value_and_gradient(fit.theta)  # last, so that its log-determinant sums stay
    return hessian
