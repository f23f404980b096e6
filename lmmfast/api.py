"""The one-call API: parse → design → cross-products → factor → objective → optimise → result.

Each step is a public function of its own module; :func:`lmm` only chains them.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from formulaic import Formula
from formulaic.transforms import TRANSFORMS

from lmmfast._version import __version__
from lmmfast.crossprod import form_cross_products
from lmmfast.design import build_fixed_design, build_model_frame, build_random_terms
from lmmfast.design.random import display_names
from lmmfast.errors import ConvergenceWarning, DataError, FormulaError, SingularFitWarning
from lmmfast.factor import CholmodFactor
from lmmfast.formula import ModelFormula, parse_formula
from lmmfast.objective import ProfiledObjective
from lmmfast.optimize import optimize_theta
from lmmfast.parameters import ThetaLayout
from lmmfast.result import LmmResult, RandomTermResult


_IDENTIFIER = re.compile(r"`([^`]+)`|([A-Za-z_.][A-Za-z0-9_.]*)")


def _variables(expression: str, where: str, available: set[str]) -> set[str]:
    """Data variables used by a formulaic expression.

    formulaic hides names that are also transforms (a column ``C`` reads as ``C()``), and
    misses the arguments of some stateful transforms; so a name counts when formulaic sees it
    as a value and it is a column or no transform, and any identifier that is a column counts.
    """
    try:
        parsed = Formula(expression)
    except Exception as exc:
        raise FormulaError(f"Could not parse {where} {expression!r}: {exc}") from exc
    parts = [parsed.lhs, parsed.rhs] if hasattr(parsed, "lhs") else [parsed]
    found: set[str] = set()
    for part in parts:
        for term in part:
            for factor in term.factors:
                for variable in factor.required_variables:
                    root = str(variable.root)
                    if root in available or root not in TRANSFORMS:
                        found.add(root)
    for quoted, bare in _IDENTIFIER.findall(expression):
        if (quoted or bare) in available:
            found.add(quoted or bare)
    return found


def required_columns(model: ModelFormula, available: Iterable[str] = ()) -> list[str]:
    """Every data column the model formula uses, in order of first appearance.

    Examples
    --------
    >>> required_columns(parse_formula("y ~ x + (1 + z | g/h)"))
    ['y', 'x', 'z', 'g', 'h']
    """
    columns = {str(c) for c in available}
    pieces = [_variables(model.fixed_formula, "the fixed part", columns)]
    for spec in model.random:
        pieces.append(_variables(spec.expr, f"the random term {spec.source}", columns))
        pieces.append(set(spec.factors))
    text = model.text
    found: list[str] = []
    for piece in pieces:
        for name in sorted(piece, key=lambda v: (text.find(v) if v in text else len(text), v)):
            if name not in found:
                found.append(name)
    return found


def _column_names(data: object) -> list[str]:
    names = getattr(data, "columns", None)
    if names is None and hasattr(data, "column_names"):
        names = data.column_names  # pyarrow
    if names is None and isinstance(data, dict):
        names = list(data.keys())
    return [str(n) for n in names] if names is not None else []


def _check_weights(weights: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(weights)):
        raise DataError(f"The weights {name} have infinite values; weights must be finite and positive.")
    if np.any(weights <= 0):
        raise DataError(
            f"The weights {name} have {int(np.sum(weights <= 0))} values ≤ 0; prior weights must be positive "
            "(drop rows that should not count)."
        )


def lmm(
    formula: str,
    data: object,
    *,
    reml: bool = True,
    weights: str | Sequence[float] | np.ndarray | None = None,
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

    Returns
    -------
    LmmResult

    Raises
    ------
    FormulaError, DataError, ModelError
        For malformed formulas, unusable data, and models the data cannot identify.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(fit.objective, 3)
    1743.628
    """
    began = time.perf_counter()
    if not isinstance(reml, (bool, np.bool_)):
        raise DataError(f"reml must be True or False, got {reml!r}.")
    model = parse_formula(formula)
    columns = required_columns(model, _column_names(data))
    weights_name: str | None = None
    weight_values: np.ndarray | None = None
    if isinstance(weights, str):
        weights_name = weights
        columns.append(weights) if weights not in columns else None
    elif weights is not None:
        try:
            weight_values = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("weights must be a column name or an array of positive numbers.") from None
        if weight_values.ndim != 1:
            raise DataError(f"weights must be one-dimensional, got shape {weight_values.shape}.")
        weights_name = "weights"

    frame_info = build_model_frame(data, columns)
    frame = frame_info.frame
    if weight_values is not None:
        if len(weight_values) != frame_info.n_input_rows:
            raise DataError(
                f"weights has {len(weight_values)} values but the data have {frame_info.n_input_rows} rows."
            )
        keep = np.ones(frame_info.n_input_rows, dtype=bool)
        keep[frame_info.dropped_rows] = False
        weight_values = weight_values[keep]
        if np.any(np.isnan(weight_values)):
            raise DataError("weights has missing values; give every row a positive weight.")
    elif weights_name is not None:
        column = frame[weights_name]
        if not np.issubdtype(column.dtype, np.number):
            raise DataError(f"The weights column {weights_name!r} must be numeric, got {column.dtype}.")
        weight_values = column.to_numpy(dtype=np.float64)
    if weight_values is not None:
        _check_weights(weight_values, repr(weights_name))

    fixed = build_fixed_design(frame, model.response, model.fixed)
    terms = build_random_terms(frame, model.random)
    if frame_info.dropped_rows.size:
        pass  # counted on the result and printed by summary()

    cross_products = form_cross_products(terms, fixed.X, fixed.y, weight_values)
    layout = ThetaLayout.from_sizes([t.k for t in terms])
    objective = ProfiledObjective(cross_products, layout, CholmodFactor(cross_products, layout), reml=bool(reml))
    record = optimize_theta(objective, layout)
    solution = objective.solve(record.final)

    names = display_names(terms)
    term_results = []
    fitted = fixed.X @ solution.beta
    for index, (term, name) in enumerate(zip(terms, names)):
        rows = slice(
            int(cross_products.column_offsets[index]),
            int(cross_products.column_offsets[index] + term.n_levels * term.k),
        )
        modes = solution.b[rows].reshape(term.n_levels, term.k)
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
    residuals = fixed.y - fitted
    if weight_values is not None:
        residuals = residuals * np.sqrt(weight_values)

    result = LmmResult(
        formula=model.text,
        reml=bool(reml),
        data_name=getattr(data, "_lmmfast_name", None),
        weights_name=weights_name,
        fixef_names=fixed.names,
        beta=solution.beta,
        beta_covariance=solution.beta_covariance,
        sigma=solution.sigma,
        theta=record.final,
        theta_names=tuple(layout.names(names, [t.columns for t in terms])),
        terms=tuple(term_results),
        objective=record.final_objective,
        nobs=cross_products.n,
        dropped_rows=frame_info.dropped_rows,
        dropped_columns=fixed.dropped,
        scaled_residuals=residuals / solution.sigma,
        optsummary=record,
        fit_seconds=time.perf_counter() - began,
        version=__version__,
    )
    if not record.converged:
        warnings.warn(
            f"The optimiser stopped before converging ({record.return_code} after {record.n_evals} "
            "evaluations); the estimates may be off. Rescale predictors or simplify the random effects.",
            ConvergenceWarning,
            stacklevel=2,
        )
    if result.singular:
        zero = [n for n, t, d in zip(result.theta_names, result.theta, layout.is_diagonal) if d and t < 1e-4]
        warnings.warn(
            "Boundary (singular) fit: the variance of "
            + ", ".join(zero)
            + " is estimated as zero (or its term's covariance matrix is singular). The estimates are valid "
            "but the random-effects structure is richer than these data support; consider removing those terms.",
            SingularFitWarning,
            stacklevel=2,
        )
    return result
