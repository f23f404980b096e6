"""A generalized model ready to optimise: formula → response and design → pattern → PIRLS.

The design is built as for :func:`lmmfast.prepare.prepare` (the same formula language, the
same terms, merged the same way); what differs is the response (:mod:`lmmfast.generalized.response`),
the offset, observation-level random effects (allowed: a generalized model has no residual
variance to confound them with) and the factor, made for weights that change every PIRLS
iteration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lmmfast.control import Control
from lmmfast.crossprod import CrossProducts, PairPattern, RowPattern, form_cross_products, pair_pattern
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
from lmmfast.design.variables import required_columns
from lmmfast.design.weights import prior_weights
from lmmfast.errors import ArgumentError, DataError, ModelError
from lmmfast.factor import make_factor
from lmmfast.formula import ModelFormula, parse_formula
from lmmfast.formula.contrasts import check_string_codings, with_contrasts
from lmmfast.generalized.deviance import GlmmDeviance
from lmmfast.generalized.family import Family
from lmmfast.generalized.pirls import Pirls
from lmmfast.generalized.response import Response, build_response, cbind_parts, evaluate, whole_numbers
from lmmfast.parameters import ThetaLayout
from lmmfast.prepare import design_bytes, terms_arrays

#: The response's column in the model frame once it is in R's form (a proportion or counts).
RESPONSE_COLUMN = "_lmmfast_response_"


@dataclass(frozen=True, eq=False)
class PreparedGlmm:
    """A generalized model ready to optimise.

    Attributes
    ----------
    formula : ModelFormula
    family : Family
    nagq : int
    model_frame : ModelFrame
    fixed : FixedDesign
        X (and, as y, the response in R's form).
    response : Response
    terms : list of RandomTerm
        lme4's order.
    engine : EngineTerms
    layout : ThetaLayout
        θ on the model's terms.
    deviance : GlmmDeviance
        The deviance functions on the engine's terms.
    start_eta : numpy.ndarray
        R's starting linear predictor, g(mustart).
    data_name, weights_name, offset_name : str or None
    control : Control
    encoding : DesignEncoding
        How the design was built from the data, without the rows (for new data).
    """

    formula: ModelFormula
    family: Family
    nagq: int
    model_frame: ModelFrame
    fixed: FixedDesign
    response: Response
    terms: list[RandomTerm]
    engine: EngineTerms
    layout: ThetaLayout
    deviance: GlmmDeviance
    start_eta: np.ndarray
    data_name: str | None
    weights_name: str | None
    offset_name: str | None
    control: Control
    encoding: DesignEncoding
    #: The ``weights=`` and ``offset=`` arguments as given: a column name, or the values of
    #: the rows used (to prepare the model again from its rows, as a saved fit does).
    given_weights: str | np.ndarray | None = None
    given_offset: str | np.ndarray | None = None

    @property
    def has_rows(self) -> bool:
        """Always True: generalized models are fitted to data in memory."""
        return True

    def require_rows(self, purpose: str) -> None:
        """Nothing to check: generalized models hold their rows."""

    @property
    def cross_products(self) -> CrossProducts:
        """The cross-products the factor was made with (their shape: sizes, levels, offsets)."""
        return self.deviance.pirls.shape


def _offset_values(
    model: ModelFormula, offset: str | Sequence[float] | np.ndarray | None, frame_info: ModelFrame
) -> tuple[np.ndarray, str | None]:
    frame = frame_info.frame
    n = len(frame)
    total = np.zeros(n)
    names = []
    for expression in model.offsets:
        total += evaluate(expression, frame, "The offset")
        names.append(f"offset({expression})")
    if offset is not None:
        if isinstance(offset, str):
            total += evaluate(offset, frame, "The offset")
            names.append(offset)
        else:
            try:
                given = np.asarray(offset, dtype=np.float64)
            except (TypeError, ValueError):
                raise ArgumentError("offset must be a column name or an array of numbers.") from None
            if given.shape != (frame_info.n_input_rows,):
                raise DataError(
                    f"offset must hold one value per row of the data ({frame_info.n_input_rows}), got shape "
                    f"{given.shape}."
                )
            total += complete_cases(given, frame_info)
            names.append("offset")
    if not np.all(np.isfinite(total)):
        raise DataError(
            f"The offset ({' + '.join(names)}) has missing or infinite values (log of 0?); remove those rows."
        )
    return total, " + ".join(names) if names else None


def complete_cases(values: np.ndarray, frame_info: ModelFrame) -> np.ndarray:
    """The entries of ``values`` (one per row of the user's data) of the rows the model uses."""
    keep = np.ones(frame_info.n_input_rows, dtype=bool)
    keep[frame_info.dropped_rows] = False
    return values[keep]


def _proxy_formula(model: ModelFormula) -> ModelFormula:
    """The formula with a response formulaic can read (``cbind``'s two parts as ``I(...)``
    terms), to find every column the model uses."""
    parts = cbind_parts(model.response)
    response = " + ".join(f"I({part})" for part in parts) if parts else model.response
    return replace(model, response=response)


#: Per-row vectors that PIRLS holds (its five buffers, the previous η, the saturated
#: deviance terms) or makes within an iteration (the working response, a trial's u-part of
#: η, the step in η and their temporaries).
PIRLS_ROW_VECTORS = 12


def pirls_bytes(n: int, p: int, engine_terms: Sequence[RandomTerm], pairs: PairPattern) -> int:
    """Bytes PIRLS's rows take, made after the factor: the rows laid out for its weighted
    cross-products (:class:`lmmfast.crossprod.RowPattern`: each engine term's codes and
    values, each pair's slots), a C-ordered copy of X, and ``PIRLS_ROW_VECTORS``."""
    values = sum(term.k for term in engine_terms)
    return 8 * n * (len(engine_terms) + values + len(pairs) + p + PIRLS_ROW_VECTORS)


def glmm_columns(model: ModelFormula, data: object, weights: object, offset: object) -> list[str]:
    """The columns of ``data`` that ``model`` reads, those of the offset and the weights among
    them when ``offset`` and ``weights`` name them."""
    columns = required_columns(_proxy_formula(model), column_names(data))
    for name in (offset, weights):
        if isinstance(name, str) and name not in columns:
            columns.append(name)
    return columns


def prepare_glmm(
    formula: str,
    data: object,
    family: Family,
    *,
    nagq: int = 1,
    weights: str | Sequence[float] | np.ndarray | None = None,
    offset: str | Sequence[float] | np.ndarray | None = None,
    control: Control | None = None,
    contrasts: Mapping[str, Any] | None = None,
    like: DesignEncoding | None = None,
) -> PreparedGlmm:
    """Parse, check the response, build the design and the PIRLS — all of a generalized fit
    but the optimisation. Arguments as for :func:`lmmfast.glmm`; ``like`` as for
    :func:`lmmfast.prepare.prepare`.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.generalized.family import Family
    >>> data = lmmfast.datasets.load("verbagg").assign(answer=lambda d: d.r2.map({0: "N", 1: "Y"}))
    >>> model = prepare_glmm("answer ~ Anger + (1 | id)", data, Family("binomial"))
    >>> model.response.success, len(model.response.y)
    ('Y', 7584)
    """
    control = Control() if control is None else control
    model = parse_formula(formula)
    check_string_codings(model)
    if like is not None and like.formula.text != model.text:
        raise ArgumentError(f"like= is the encoding of {like.formula.text!r}, not of {model.text!r}.")
    frame_info = build_model_frame(data, glmm_columns(model, data, weights, offset))
    fixed_spec, term_specs = None, {}
    if like is not None and every_spec_fits(like, frame_info.frame):
        fixed_spec, term_specs = like.fixed_spec, {term.expr: term.spec for term in like.terms}
        model = like.formula
    else:
        model = with_contrasts(model, resolve_codings(contrasts, model, frame_info.frame))
    weight_values, weights_name = prior_weights(weights, frame_info)
    offset_values, offset_name = _offset_values(model, offset, frame_info)
    given_offset = (
        offset if offset is None or isinstance(offset, str) else complete_cases(np.asarray(offset), frame_info)
    )
    response = build_response(family, frame_info.frame, model.response, weight_values, offset_values)
    frame = frame_info.frame.assign(**{RESPONSE_COLUMN: response.y})
    fixed = build_fixed_design(frame, RESPONSE_COLUMN, model.fixed, spec=fixed_spec)
    n, p = fixed.X.shape
    if n <= p:
        raise ModelError(
            f"{n} complete observations for {p} fixed-effect columns; simplify the fixed part or supply more data."
        )
    terms = build_random_terms(frame, model.random, observation_level=True, model_specs=term_specs)
    if nagq > 1 and (len(terms) != 1 or terms[0].k != 1):
        raise ModelError(
            f"nagq={nagq} (adaptive Gauss–Hermite quadrature) needs a single scalar random-effects term, as in "
            "lme4, such as (1 | g); this model has "
            + ", ".join(f"({' + '.join(t.columns)} | {t.group})" for t in terms)
            + ". Use nagq=1 (Laplace) or nagq=0."
        )
    engine = amalgamate(terms, merge=control.merge_terms)
    engine_terms = engine.terms
    pairs = pair_pattern(engine_terms)
    start_mu = family.starting_mu(response.y, response.weights)
    start_eta = family.link_function(start_mu)
    # the factor's pattern and route (any weights give the same; PIRLS refills the values)
    shape = form_cross_products(engine_terms, fixed.X, start_eta - response.offset, response.weights, pairs)
    layout = ThetaLayout.from_sizes([t.k for t in terms])
    engine_layout = layout.merged(engine.blocks, engine.sizes) if engine.merged else layout
    rows = [fixed.X, start_eta, *(a for a in vars(response).values() if isinstance(a, np.ndarray))]
    factor = make_factor(
        shape,
        engine_layout,
        control.factorization,
        control.memory_budget,
        control.threads,
        control.coupling,
        engine.merged,
        varying_weights=True,
        design_bytes=design_bytes(frame_info.frame, [*rows, *terms_arrays(terms)], shape)
        + pirls_bytes(len(response.y), fixed.X.shape[1], engine_terms, pairs),
    )
    pattern = RowPattern.of(engine_terms, pairs, shape)
    pirls = Pirls(engine_terms, pattern, fixed.X, response, family, engine_layout, factor, control.threads)
    return PreparedGlmm(
        formula=model,
        family=family,
        nagq=nagq,
        model_frame=frame_info,
        fixed=fixed,
        response=response,
        terms=terms,
        engine=engine,
        layout=layout,
        deviance=GlmmDeviance(pirls, layout.size, nagq),
        start_eta=start_eta,
        data_name=data_name(data),
        weights_name=weights_name,
        offset_name=offset_name,
        control=control,
        encoding=encode_design(model, fixed, terms, frame_info.frame),
        given_weights=weights if weights is None or isinstance(weights, str) else weight_values,
        given_offset=given_offset,
    )


def with_response(prepared: PreparedGlmm, y: np.ndarray) -> PreparedGlmm:
    """The same model for a new response on the same rows, in R's form (proportions of the
    same trials, or counts): the design, the row pattern and the factor's set-up are reused.

    Raises
    ------
    DataError
        When ``y`` has not one value per observation, or values the family cannot take.

    Examples
    --------
    >>> import lmmfast
    >>> model = prepare_glmm("incidence ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), Family("poisson"))
    >>> with_response(model, model.response.y + 1).response.y[:3].tolist()
    [3.0, 4.0, 5.0]
    """
    old = prepared.response
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("y must be an array of numbers, one per observation used by the fit.") from None
    if y.shape != old.y.shape or not np.all(np.isfinite(y)):
        raise DataError(
            f"y must hold one finite value per observation used by the fit ({len(old.y)}), got shape {y.shape}."
        )
    if prepared.family.name == "binomial":
        successes = y * old.trials
        if np.any((y < 0) | (y > 1)) or not whole_numbers(successes):
            raise DataError("A binomial response must be proportions of the fit's trials (0/1 without trials).")
        response = replace(old, y=y, successes=np.round(successes))
    else:
        if np.any(y < 0) or not whole_numbers(y):
            raise DataError("A Poisson response must be counts (whole numbers >= 0).")
        response = replace(old, y=np.round(y), successes=np.round(y))
    pirls = prepared.deviance.pirls
    fresh = Pirls(pirls.terms, pirls.pattern, pirls.X, response, pirls.family, pirls.layout, pirls.factor)
    family = prepared.family
    return replace(
        prepared,
        response=response,
        fixed=replace(prepared.fixed, y=response.y),
        deviance=GlmmDeviance(fresh, prepared.layout.size, prepared.nagq),
        start_eta=family.link_function(family.starting_mu(response.y, response.weights)),
    )
