"""A model ready to optimise: formula → design → cross-products → factor → objective.

:func:`prepare` does all of a fit but the optimisation (lme4's ``devFunOnly``); the
:class:`PreparedModel` it returns is what the one fit path (:mod:`lmmfast.fit`) optimises.
New responses and the other criterion enter through :func:`with_response` and
:func:`with_reml`, which reuse everything that depends only on X and Z.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.control import Control, control_with
from lmmfast.crossprod import form_cross_products
from lmmfast.design import (
    FixedDesign,
    ModelFrame,
    RandomTerm,
    build_fixed_design,
    build_model_frame,
    build_random_terms,
)
from lmmfast.design.amalgamate import EngineTerms, amalgamate
from lmmfast.design.coding import resolve_codings
from lmmfast.design.data import column_names, data_name
from lmmfast.design.encoding import DesignEncoding, encode_design
from lmmfast.design.variables import required_columns
from lmmfast.design.weights import prior_weights
from lmmfast.errors import ArgumentError, DataError, FormulaError, ModelError
from lmmfast.factor import make_factor
from lmmfast.factor.envelope import envelope_criterion
from lmmfast.formula import ModelFormula, parse_formula
from lmmfast.formula.contrasts import check_string_codings, with_contrasts
from lmmfast.objective import ProfiledObjective
from lmmfast.parameters import ThetaLayout
from lmmfast.validation import check_bool


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
    engine : EngineTerms
        The terms the engine factors (those on one grouping factor merged) and where each of
        ``terms`` sits in them; the cross-products, the factor and the criterion are theirs.
    weights : numpy.ndarray or None
    weights_name : str or None
    layout : ThetaLayout
        θ's layout on the model's terms (the objective holds the engine's).
    objective : ProfiledObjective
        θ ↦ REML criterion or ML deviance.
    data_name : str or None
    control : Control
        The settings it was prepared with, used again by its fits and refits.
    encoding : DesignEncoding
        How the design was built from the data, without the rows (for new data).
    """

    formula: ModelFormula
    model_frame: ModelFrame
    fixed: FixedDesign
    terms: list[RandomTerm]
    engine: EngineTerms
    weights: np.ndarray | None
    weights_name: str | None
    layout: ThetaLayout
    objective: ProfiledObjective
    data_name: str | None
    control: Control
    encoding: DesignEncoding

    @property
    def reml(self) -> bool:
        """Whether the objective is the REML criterion (else the ML deviance)."""
        return self.objective.reml


def prepare(
    formula: str,
    data: object,
    *,
    reml: bool = True,
    weights: str | Sequence[float] | np.ndarray | None = None,
    control: Control | None = None,
    factorization: str | None = None,
    memory_budget: float | None = None,
    contrasts: Mapping[str, Any] | None = None,
) -> PreparedModel:
    """Parse, build the design and the cross-products, and set up the objective — all of a
    fit but the optimisation. Arguments as for :func:`lmmfast.lmm`.

    Examples
    --------
    >>> import lmmfast
    >>> prepared = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> round(prepared.objective(prepared.layout.start), 4)
    319.7924
    """
    reml = check_bool("reml", reml)
    control = control_with(control, factorization=factorization, memory_budget=memory_budget)
    if weights is not None and not isinstance(weights, (str, Sequence, np.ndarray, pd.Series)):
        raise ArgumentError(f"weights must be a column name or an array, got {type(weights).__name__}.")
    model = parse_formula(formula)
    if model.offsets:
        raise FormulaError(
            f"offset({model.offsets[0]}) in a linear mixed model: lmm takes no offsets; subtract it from the "
            f"response instead (I(y - {model.offsets[0]}) ~ ...). Generalized models (lmmfast.glmm) take offsets."
        )
    check_string_codings(model)
    columns = required_columns(model, column_names(data))
    if isinstance(weights, str) and weights not in columns:
        columns.append(weights)
    frame_info = build_model_frame(data, columns)
    model = with_contrasts(model, resolve_codings(contrasts, model, frame_info.frame))
    weight_values, weights_name = prior_weights(weights, frame_info)
    fixed = build_fixed_design(frame_info.frame, model.response, model.fixed)
    n, p = fixed.X.shape
    if n <= p:
        raise ModelError(
            f"{n} complete observations for {p} fixed-effect columns: the residual variance needs "
            "more observations than fixed effects. Simplify the fixed part or supply more data."
        )
    terms = build_random_terms(frame_info.frame, model.random)
    engine = amalgamate(terms, merge=control.merge_terms)
    cross_products = form_cross_products(engine.terms, fixed.X, fixed.y, weight_values)
    layout = ThetaLayout.from_sizes([t.k for t in terms])
    engine_layout = layout.merged(engine.blocks, engine.sizes) if engine.merged else layout
    factor = make_factor(
        cross_products,
        engine_layout,
        control.factorization,
        control.memory_budget,
        control.threads,
        control.coupling,
        engine.merged,
    )
    objective = ProfiledObjective(
        cross_products, engine_layout, factor, reml=reml, envelope=envelope_criterion(cross_products, engine_layout)
    )
    return PreparedModel(
        formula=model,
        model_frame=frame_info,
        fixed=fixed,
        terms=terms,
        engine=engine,
        weights=weight_values,
        weights_name=weights_name,
        layout=layout,
        objective=objective,
        data_name=data_name(data),
        control=control,
        encoding=encode_design(model, fixed, terms, frame_info.frame),
    )


def with_reml(prepared: PreparedModel, reml: bool) -> PreparedModel:
    """The same model with the REML criterion or the ML deviance as its objective (the
    cross-products and the factor's set-up are reused).

    Examples
    --------
    >>> import lmmfast
    >>> prepared = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> with_reml(prepared, False).reml, prepared.reml
    (False, True)
    """
    if prepared.reml == reml:
        return prepared
    return replace(prepared, objective=prepared.objective.fresh(reml=reml))


def with_response(prepared: PreparedModel, y: np.ndarray) -> PreparedModel:
    """The same model for a new response on the same rows: only the response's
    cross-products are formed again (one pass over the rows).

    Raises
    ------
    DataError
        When ``y`` has not one finite value per observation the model uses.

    Examples
    --------
    >>> import lmmfast
    >>> prepared = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> doubled = with_response(prepared, 2 * prepared.fixed.y)
    >>> yty = [float(model.objective.cross_products.XytXy[-1, -1]) for model in (doubled, prepared)]
    >>> yty[0] == 4 * yty[1]
    True
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(prepared.fixed.y)
    if y.shape != (n,):
        raise DataError(f"y must have one value per observation used by the fit ({n}), got shape {y.shape}.")
    if not np.all(np.isfinite(y)):
        raise DataError("y has missing or infinite values; a refit needs a finite response for every row.")
    cross_products = prepared.objective.cross_products.with_response(
        prepared.engine.terms, prepared.fixed.X, y, prepared.weights
    )
    objective = prepared.objective.fresh(cross_products=cross_products)
    return replace(prepared, fixed=replace(prepared.fixed, y=y), objective=objective)


def without_columns(prepared: PreparedModel, columns: Sequence[int]) -> PreparedModel:
    """The same model without the fixed-effects ``columns`` (indices into X): the reduced
    model of a likelihood-ratio test of those columns, its cross-products taken from the full
    model's, no pass over the rows.

    Examples
    --------
    >>> import lmmfast
    >>> prepared = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> reduced = without_columns(prepared, [1])
    >>> reduced.fixed.names, reduced.objective.cross_products.p
    (('Intercept',), 1)
    """
    p = len(prepared.fixed.names)
    dropped = {int(c) for c in columns}
    keep = [j for j in range(p) if j not in dropped]
    with_y = [*keep, p]
    cp = prepared.objective.cross_products
    reduced = replace(cp, ZtXy=cp.ZtXy[:, with_y], XytXy=cp.XytXy[np.ix_(with_y, with_y)])
    objective = prepared.objective
    layout = objective.layout
    fixed = prepared.fixed
    kept = tuple(fixed.kept[j] for j in keep) if fixed.kept else ()
    return replace(
        prepared,
        fixed=replace(fixed, X=fixed.X[:, keep], names=tuple(fixed.names[j] for j in keep), kept=kept),
        encoding=replace(prepared.encoding, kept=kept),
        objective=ProfiledObjective(
            reduced, layout, objective.factor.fresh(), objective.reml, envelope=envelope_criterion(reduced, layout)
        ),
    )
