"""The one-call API: parse → design → cross-products → factor → objective → optimise → result.

Each step is a public function of its own module; :func:`lmm` only chains them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lmmfast._version import __version__
from lmmfast.blas import limit_blas_threads
from lmmfast.convergence import ConvergenceCheck, check_convergence
from lmmfast.crossprod import form_cross_products
from lmmfast.design import (
    FixedDesign,
    ModelFrame,
    RandomTerm,
    build_fixed_design,
    build_model_frame,
    build_random_terms,
)
from lmmfast.design.data import column_names, data_name
from lmmfast.design.fixed import is_binary
from lmmfast.design.random import display_names, grouping_keys
from lmmfast.design.variables import required_columns
from lmmfast.design.weights import prior_weights
from lmmfast.diagnostics import report, resolve_checks
from lmmfast.errors import (
    ArgumentError,
    BinaryResponseWarning,
    ConvergenceWarning,
    ModelError,
    RankDeficiencyWarning,
    SingularFitWarning,
)
from lmmfast.factor import make_factor
from lmmfast.factor.choose import METHODS as FACTORIZATION_METHODS
from lmmfast.formula import ModelFormula, parse_formula
from lmmfast.objective import INFEASIBLE, ProfiledObjective
from lmmfast.optimize import (
    OPTIMIZERS,
    SINGULAR_TOLERANCE,
    OptSummary,
    gradient_for,
    optimize_theta,
)
from lmmfast.parameters import ThetaLayout
from lmmfast.result import LmmResult, RandomTermResult
from lmmfast.start import initial_theta
from lmmfast.validation import check_bool, check_choice, check_positive_number


@dataclass(frozen=True, eq=False)
class PreparedModel:
    """A model ready to optimise: its design, cross-products and objective (lme4's
    ``lmer(devFunOnly = TRUE)`` and more).

    Attributes
    ----------
    formula : ModelFormula
    model_frame : ModelFrame
    fixed : FixedDesign
    terms : list of RandomTerm
        In lme4's order (decreasing number of levels).
    weights : numpy.ndarray or None
    weights_name : str or None
    layout : ThetaLayout
    objective : ProfiledObjective
        θ ↦ REML criterion or ML deviance.
    data_name : str or None
    optimizer : str
        ``"auto"``, ``"bobyqa"`` or ``"lbfgsb"``, used again by refits.
    """

    formula: ModelFormula
    model_frame: ModelFrame
    fixed: FixedDesign
    terms: list[RandomTerm]
    weights: np.ndarray | None
    weights_name: str | None
    layout: ThetaLayout
    objective: ProfiledObjective
    data_name: str | None
    optimizer: str = "auto"


def prepare(
    formula: str,
    data: object,
    *,
    reml: bool = True,
    weights: str | Sequence[float] | np.ndarray | None = None,
    factorization: str = "auto",
    memory_budget: float | None = None,
) -> PreparedModel:
    """Parse, build the design and the cross-products, and set up the objective — all of a
    fit but the optimisation. Arguments as for :func:`lmm`.

    Examples
    --------
    >>> import lmmfast
    >>> prepared = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> round(prepared.objective(prepared.layout.start), 4)
    319.7924
    """
    reml = check_bool("reml", reml)
    if memory_budget is not None:
        memory_budget = check_positive_number("memory_budget", memory_budget, "bytes")
    check_choice("factorization", factorization, FACTORIZATION_METHODS)
    if weights is not None and not isinstance(weights, (str, Sequence, np.ndarray, pd.Series)):
        raise ArgumentError(f"weights must be a column name or an array, got {type(weights).__name__}.")
    model = parse_formula(formula)
    columns = required_columns(model, column_names(data))
    if isinstance(weights, str) and weights not in columns:
        columns.append(weights)
    frame_info = build_model_frame(data, columns)
    weight_values, weights_name = prior_weights(weights, frame_info)
    fixed = build_fixed_design(frame_info.frame, model.response, model.fixed)
    n, p = fixed.X.shape
    if n <= p:
        raise ModelError(
            f"{n} complete observations for {p} fixed-effect columns: the residual variance needs "
            "more observations than fixed effects. Simplify the fixed part or supply more data."
        )
    terms = build_random_terms(frame_info.frame, model.random)
    cross_products = form_cross_products(terms, fixed.X, fixed.y, weight_values)
    layout = ThetaLayout.from_sizes([t.k for t in terms])
    factor = make_factor(cross_products, layout, factorization, memory_budget, grouping_keys(terms))
    objective = ProfiledObjective(cross_products, layout, factor, reml=bool(reml))
    return PreparedModel(
        formula=model,
        model_frame=frame_info,
        fixed=fixed,
        terms=terms,
        weights=weight_values,
        weights_name=weights_name,
        layout=layout,
        objective=objective,
        data_name=data_name(data),
    )


def _assemble(
    prepared: PreparedModel, record: OptSummary, began: float, convergence: ConvergenceCheck | None = None
) -> LmmResult:
    """The frozen result at the optimum: one solve, one pass over the rows for residuals."""
    objective, layout, terms = prepared.objective, prepared.layout, prepared.terms
    try:
        solution = objective.solve(record.final)
    except np.linalg.LinAlgError as error:
        raise ModelError(
            f"The model cannot be solved at the optimum the optimiser reported ({error}). The random "
            "effects are redundant (the same term twice, or a term that duplicates another) or the data "
            "are of extreme scale; remove the redundant terms or rescale the predictors."
        ) from error
    offsets = objective.cross_products.column_offsets
    names = display_names(terms)
    fitted = prepared.fixed.X @ solution.beta
    term_results = []
    for index, (term, name) in enumerate(zip(terms, names)):
        start = int(offsets[index])
        modes = solution.b[start : start + term.n_levels * term.k].reshape(term.n_levels, term.k)
        fitted += np.einsum("ij,ij->i", term.values, modes[term.codes])
        term_results.append(
            RandomTermResult(
                name=name,
                group=term.group,
                columns=term.columns,
                levels=term.levels,
                template=layout.template(record.final, index),
                modes=modes,
            )
        )
    residuals = prepared.fixed.y - fitted
    fitted = fitted.copy()
    if prepared.weights is not None:
        residuals = residuals * np.sqrt(prepared.weights)
    return LmmResult(
        formula=prepared.formula.text,
        reml=objective.reml,
        data_name=prepared.data_name,
        weights_name=prepared.weights_name,
        fixef_names=prepared.fixed.names,
        beta=solution.beta,
        beta_covariance=solution.beta_covariance,
        sigma=solution.sigma,
        theta=record.final,
        theta_names=tuple(layout.names([t.group for t in terms], [t.columns for t in terms])),
        terms=tuple(term_results),
        objective=record.final_objective,
        nobs=objective.cross_products.n,
        dropped_rows=prepared.model_frame.dropped_rows,
        dropped_columns=prepared.fixed.dropped,
        scaled_residuals=residuals / solution.sigma,
        fitted_values=fitted,
        optsummary=record,
        convergence=convergence,
        fit_seconds=time.perf_counter() - began,
        version=__version__,
        model=prepared,
    )


def lmm(
    formula: str,
    data: object,
    *,
    reml: bool = True,
    weights: str | Sequence[float] | np.ndarray | None = None,
    factorization: str = "auto",
    checks: Mapping[str, str] | None = None,
    memory_budget: float | None = None,
    optimizer: str = "auto",
    REML: bool | None = None,  # lme4's spelling, accepted for its users
) -> LmmResult:
    """Fit a linear mixed model written in lme4's formula language.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ Days + (Days | Subject)"``. Random terms: ``(1|g)``,
        ``(x|g)``, ``(0+x|g)``, ``(x||g)``, crossed ``(1|a) + (1|b)``, nested ``(1|a/b)``
        and ``(1|a:b)``.
    data : pandas or polars DataFrame, pyarrow Table, or dict of arrays
        Never modified. Rows with missing values in the used columns are dropped.
    reml : bool, default True
        REML (lme4's default) or maximum likelihood.
    weights : str or array, optional
        Prior weights: a column name or one positive value per row of ``data``.
    factorization : {"auto", "blocked", "cholmod"}
        How Λ'Z'ZΛ + I is factored: eliminating the first term into a dense block (crossed
        designs), CHOLMOD's sparse supernodal Cholesky (deep nesting), or chosen from the
        structure. Both give the same optimum.
    checks : dict, optional
        What to do about each diagnostic — ``"convergence"`` (the optimiser's stop and a
        check of the optimum: 2 evaluations per θ by finite differences after BOBYQA, the
        gradient and quasi-Newton curvature after L-BFGS-B), ``"singular"`` (a
        boundary fit) and ``"rank_deficiency"`` (aliased fixed-effect columns dropped):
        ``"warn"`` (default), ``"raise"`` (raise the warning as an exception) or
        ``"ignore"`` (``"convergence": "ignore"`` also skips that check).
    memory_budget : float, optional
        Bytes the factorisation may use (default: 80% of physical memory). Models that would
        need more are refused up front with a :class:`MemoryBudgetError`.
    optimizer : {"auto", "bobyqa", "lbfgsb"}
        BOBYQA (derivative-free, as lme4) or L-BFGS-B with the analytic gradient (blocked
        factorisation only); ``"auto"`` takes L-BFGS-B for models with many variance
        parameters or a large dense block, where it needs far fewer evaluations. Both reach
        the same optimum.
    REML : bool, optional
        lme4's spelling of ``reml``, accepted as its alias (``REML=False`` is ``reml=False``).

    Returns
    -------
    LmmResult

    Raises
    ------
    FormulaError, DataError, ModelError
        For malformed formulas, unusable data, and models the data cannot identify.
    ArgumentError
        For arguments of the wrong type or value.
    ConvergenceError, SingularFitError, RankDeficiencyError
        Instead of the warnings, when ``checks`` says ``"raise"``.

    Warns
    -----
    ConvergenceWarning, SingularFitWarning, RankDeficiencyWarning, BinaryResponseWarning

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(fit.objective, 3)
    1743.628
    """
    began = time.perf_counter()
    if REML is not None:
        REML = check_bool("REML", REML)
        if reml is not True and bool(reml) != bool(REML):
            raise ArgumentError(f"reml={reml!r} and REML={REML!r} disagree; give one of them (reml is lmmfast's name).")
        reml = bool(REML)
    actions = resolve_checks(checks)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    prepared = prepare(
        formula, data, reml=reml, weights=weights, factorization=factorization, memory_budget=memory_budget
    )
    if optimizer == "lbfgsb" and not prepared.objective.has_gradient:
        raise ArgumentError(
            "optimizer='lbfgsb' needs the analytic gradient, which only the blocked factorisation provides, "
            "and this model takes the CHOLMOD path; use optimizer='bobyqa' or 'auto', or factorization='blocked'."
        )
    prepared = replace(prepared, optimizer=optimizer)
    if is_binary(prepared.fixed.y):
        report(
            actions["binary_response"],
            f"The response {prepared.formula.response!r} has only the values 0 and 1, and a linear mixed model "
            "is being fitted to it (a linear probability model: predictions can leave [0, 1] and the residual "
            "variance cannot be constant). Binary outcomes such as accuracy are usually fitted by a logistic "
            "mixed model (lme4's glmer(..., family = binomial)), which lmmfast does not fit yet. If the linear "
            "model is what you want, pass checks={'binary_response': 'ignore'}.",
            BinaryResponseWarning,
        )
    if prepared.fixed.dropped:
        report(
            actions["rank_deficiency"],
            f"The fixed-effects model matrix is rank deficient: dropping {', '.join(prepared.fixed.dropped)} "
            "(linear combinations of earlier columns), as lme4 does.",
            RankDeficiencyWarning,
        )
    with blas_threads_for(prepared.objective):
        return _fit(prepared, actions, optimizer, began)


def blas_threads_for(objective: ProfiledObjective) -> contextlib.AbstractContextManager:
    """A context that limits BLAS to the threads the factor asks for (see
    :attr:`lmmfast.factor.BlockedFactor.blas_threads`), or changes nothing."""
    return limit_blas_threads(getattr(objective.factor, "blas_threads", None))


def _fit(prepared: PreparedModel, actions: Mapping[str, str], optimizer: str, began: float) -> LmmResult:
    """Optimise, check and assemble the result of a prepared model."""
    value_and_gradient = gradient_for(prepared.objective, prepared.layout.size, optimizer)
    start = initial_theta(
        prepared.layout, prepared.terms, prepared.fixed.X, prepared.fixed.y, slopes=value_and_gradient is not None
    )
    record = optimize_theta(prepared.objective, prepared.layout, start=start, value_and_gradient=value_and_gradient)
    if record.final_objective >= INFEASIBLE:
        raise ModelError(
            "The objective could not be evaluated at any point the optimiser tried (the fixed-effects "
            "block was never positive definite); check the fixed effects for near-collinear columns "
            "and the response for extreme values."
        )
    convergence = None
    if record.converged and actions["convergence"] != "ignore":
        quasi_newton = None if record.gradient is None else (record.gradient, record.inverse_hessian)
        convergence = check_convergence(
            prepared.objective, prepared.layout, record.final, record.final_objective, quasi_newton
        )
    result = _assemble(prepared, record, began, convergence)
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
        zero = [
            name
            for name, value, diagonal in zip(result.theta_names, result.theta, prepared.layout.is_diagonal)
            if diagonal and value < SINGULAR_TOLERANCE
        ]
        report(
            actions["singular"],
            "Boundary (singular) fit: the variance of "
            + ", ".join(zero)
            + " is estimated as zero (or its term's covariance matrix is singular). The estimates are valid, "
            "but the random-effects structure is richer than these data support; consider removing those terms.",
            SingularFitWarning,
        )
    return result


def refit(prepared: PreparedModel, *, reml: bool, start: np.ndarray | None = None) -> LmmResult:
    """Fit the same design again by REML or ML, reusing the cross-products and the factor.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(refit(fit.model, reml=False).objective, 3)
    1751.939
    """
    began = time.perf_counter()
    base = prepared.objective
    objective = ProfiledObjective(base.cross_products, base.layout, base.factor, reml=reml)
    model = replace(prepared, objective=objective)
    with blas_threads_for(objective):
        record = optimize_theta(
            objective,
            model.layout,
            start=start,
            value_and_gradient=gradient_for(objective, model.layout.size, prepared.optimizer),
        )
        return _assemble(model, record, began)
