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
from lmmfast.crossprod import CrossProducts, form_cross_products
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
from lmmfast.design.encoding import DesignEncoding, encode_design, every_spec_fits
from lmmfast.design.source import ChunkedData, require_in_memory
from lmmfast.design.variables import required_columns
from lmmfast.design.weights import prior_weights
from lmmfast.errors import ArgumentError, DataError, DataNotSavedError, FormulaError, ModelError
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
    streamed : Streamed or None
        For a model of data read in chunks, where they are; it holds none of their rows
        (``fixed``, ``terms`` and ``model_frame`` have none, ``weights`` is None).
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
    streamed: Streamed | None = None

    @property
    def reml(self) -> bool:
        """Whether the objective is the REML criterion (else the ML deviance)."""
        return self.objective.reml

    @property
    def has_rows(self) -> bool:
        """Whether the model holds its rows (not for data read in chunks)."""
        return self.streamed is None

    def require_rows(self, purpose: str) -> None:
        """Raise a :class:`DataNotSavedError` saying that ``purpose`` needs the rows, for a
        model of data read in chunks."""
        if self.streamed is not None:
            raise DataNotSavedError(
                f"{purpose}: this needs the rows of the data, and the model was fitted to {self.streamed.source.name} "
                "read in chunks, keeping only their cross-products. Fit the model to the data in memory for it "
                "(pandas, polars or pyarrow), or use what works from the fit alone: the summary, confint "
                "(Wald or profile), Satterthwaite tests, emmeans, predict(newdata)."
            )


@dataclass(frozen=True)
class Streamed:
    """Where the rows of a model of data read in chunks are, and what was learnt of them.

    Attributes
    ----------
    source : ChunkedData
    binary_response : bool
        Whether the response takes only the values 0 and 1.
    """

    source: ChunkedData
    binary_response: bool


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
    like: DesignEncoding | None = None,
) -> PreparedModel:
    """Parse, build the design and the cross-products, and set up the objective — all of a
    fit but the optimisation. Arguments as for :func:`lmmfast.lmm`.

    ``like``, the encoding of a model of the same formula prepared from other data, saves
    learning the design's encoding again: when each of its formulaic specs fits these data
    (:func:`lmmfast.design.encoding.every_spec_fits`), they build the columns and its codings
    are kept; otherwise everything is learnt from these data. The model is the same either way.

    Examples
    --------
    >>> import lmmfast
    >>> prepared = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> round(prepared.objective(prepared.layout.start), 4)
    319.7924
    """
    reml = check_bool("reml", reml)
    require_in_memory(data, "lmmfast.prepare")
    control = control_with(control, factorization=factorization, memory_budget=memory_budget)
    if weights is not None and not isinstance(weights, (str, Sequence, np.ndarray, pd.Series)):
        raise ArgumentError(f"weights must be a column name or an array, got {type(weights).__name__}.")
    model = parse_linear(formula)
    if like is not None and like.formula.text != model.text:
        raise ArgumentError(f"like= is the encoding of {like.formula.text!r}, not of {model.text!r}.")
    frame_info = build_model_frame(data, model_columns(model, data, weights))
    frame = frame_info.frame
    fixed_spec, term_specs = None, {}
    if like is not None and every_spec_fits(like, frame):
        fixed_spec, term_specs = like.fixed_spec, {term.expr: term.spec for term in like.terms}
        model = like.formula
    else:
        model = with_contrasts(model, resolve_codings(contrasts, model, frame))
    weight_values, weights_name = prior_weights(weights, frame_info)
    fixed = build_fixed_design(frame, model.response, model.fixed, spec=fixed_spec)
    check_enough_rows(*fixed.X.shape)
    terms = build_random_terms(frame, model.random, model_specs=term_specs)
    engine = amalgamate(terms, merge=control.merge_terms)
    cross_products = form_cross_products(engine.terms, fixed.X, fixed.y, weight_values)
    return assemble(
        model,
        frame_info,
        fixed,
        terms,
        engine,
        cross_products,
        reml=reml,
        control=control,
        weights=(weight_values, weights_name),
        data_name=data_name(data),
        encoding=encode_design(model, fixed, terms, frame_info.frame),
    )


def model_columns(model: ModelFormula, data: object, weights: object) -> list[str]:
    """The columns of ``data`` that ``model`` reads, the weights' column among them when
    ``weights`` names one."""
    columns = required_columns(model, column_names(data))
    if isinstance(weights, str) and weights not in columns:
        columns.append(weights)
    return columns


def parse_linear(formula: str) -> ModelFormula:
    """The parsed formula of a linear mixed model (no offsets; string codings checked)."""
    model = parse_formula(formula)
    if model.offsets:
        raise FormulaError(
            f"offset({model.offsets[0]}) in a linear mixed model: lmm takes no offsets; subtract it from the "
            f"response instead (I(y - {model.offsets[0]}) ~ ...). Generalized models (lmmfast.glmm) take offsets."
        )
    check_string_codings(model)
    return model


def check_enough_rows(n: int, p: int) -> None:
    """Raise a :class:`ModelError` unless there are more observations ``n`` than fixed
    effects ``p``."""
    if n <= p:
        raise ModelError(
            f"{n} complete observations for {p} fixed-effect columns: the residual variance needs "
            "more observations than fixed effects. Simplify the fixed part or supply more data."
        )


def assemble(
    model: ModelFormula,
    frame_info: ModelFrame,
    fixed: FixedDesign,
    terms: list[RandomTerm],
    engine: EngineTerms,
    cross_products: CrossProducts,
    *,
    reml: bool,
    control: Control,
    weights: tuple[np.ndarray | None, str | None],
    data_name: str | None,
    encoding: DesignEncoding,
    streamed: Streamed | None = None,
) -> PreparedModel:
    """The prepared model of a design and its cross-products: θ's layout, the factor chosen
    for them, and the objective."""
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
        design_bytes=design_bytes(
            frame_info.frame, [fixed.X, fixed.y, weights[0], *terms_arrays(terms)], cross_products
        ),
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
        weights=weights[0],
        weights_name=weights[1],
        layout=layout,
        objective=objective,
        data_name=data_name,
        control=control,
        encoding=encoding,
        streamed=streamed,
    )


def design_bytes(frame: pd.DataFrame, arrays: Sequence[np.ndarray | None], cross_products: CrossProducts) -> int:
    """Bytes a model's design holds beyond the user's data: its model frame (eight bytes a
    value, which numbers take and Arrow strings about do), ``arrays`` (the rows' matrices and
    codes) and the cross-products' arrays. The factor's estimate adds them
    (:func:`lmmfast.factor.make_factor`)."""
    held = 8 * frame.shape[0] * frame.shape[1]
    held += sum(a.nbytes for a in arrays if a is not None)
    return held + sum(a.nbytes for a in vars(cross_products).values() if isinstance(a, np.ndarray))


def terms_arrays(terms: Sequence[RandomTerm]) -> list[np.ndarray]:
    """The per-row arrays of the random terms: each term's level codes and values."""
    return [a for term in terms for a in (term.codes, term.values)]


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
    prepared.require_rows("A refit to a new response")
    y = np.asarray(y, dtype=np.float64)
    n = len(prepared.fixed.y)
    if y.shape != (n,):
        raise DataError(f"y must have one value per observation used by the fit ({n}), got shape {y.shape}.")
    if not np.all(np.isfinite(y)):
        raise DataError("y has missing or infinite values; a refit needs a finite response for every row.")
    cross_products = prepared.objective.cross_products.with_response(
        prepared.engine.terms, prepared.fixed.X, y, prepared.weights
    )
    # factored where the model's own factor was last (a refit starts from the fit's θ̂)
    objective = prepared.objective.fresh(prepared.control.threads, cross_products=cross_products, factored=True)
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
    reduced = prepared.objective.cross_products.with_fixed_columns(keep)
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
