"""Predictions for new data from a fitted model (lme4's ``predict(m, newdata, re.form=...)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lmmfast.design.data import build_model_frame, column_names
from lmmfast.design.newdata import (
    check_categories,
    check_column_types,
    unseen_levels_as_errors,
)
from lmmfast.design.variables import formula_variables
from lmmfast.errors import DataError, LmmfastError
from lmmfast.validation import check_choice

if TYPE_CHECKING:
    from lmmfast.result import LmmFit

RANDOM_EFFECTS = ("all", "none")
NEW_LEVELS = ("population", "error")


def predict(fit: LmmFit, newdata: object, *, re: str = "all", new_levels: str = "population") -> np.ndarray:
    """Predicted means for the rows of ``newdata``.

    Parameters
    ----------
    fit : LmmFit
    newdata : DataFrame, pyarrow Table or dict of arrays
        Needs the predictors (and, for ``re="all"``, the grouping columns); no response.
    re : {"all", "none"}
        Include the conditional modes of the random effects, or predict at the population
        level (Xβ̂).
    new_levels : {"population", "error"}
        For levels the fit has not seen: their random effects are zero (the population
        level), or a :class:`DataError` names them.

    Examples
    --------
    >>> import lmmfast
    >>> data = lmmfast.datasets.load("sleepstudy")
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    >>> new = {"Days": [0.0, 10.0], "Subject": ["308", "999"]}
    >>> predict(fit, new).round(1).tolist()
    [253.7, 356.1]
    """
    check_choice("re", re, RANDOM_EFFECTS)
    check_choice("new_levels", new_levels, NEW_LEVELS)
    encoding = fit.encoding
    formula = encoding.formula
    available = set(column_names(newdata))
    # predictors, whose type must be the fit's; grouping columns are labels whatever their type
    predictors = formula_variables(formula.fixed, "the fixed part", available)
    grouping: set[str] = set()
    if re == "all":
        for spec in formula.random:
            predictors |= formula_variables(spec.expr, f"the random term {spec.source}", available)
            grouping |= set(spec.factors)
    predictors.discard(formula.response)
    needed = predictors | grouping
    frame_info = build_model_frame(newdata, sorted(needed))
    if frame_info.dropped_rows.size:
        first = int(frame_info.dropped_rows[0])
        raise DataError(
            f"newdata has missing values in {frame_info.dropped_rows.size} rows (first: row {first}); "
            "predictions need every predictor and grouping column."
        )
    frame = frame_info.frame
    check_column_types(encoding.column_kinds, frame, sorted(predictors))
    check_categories(encoding.fixed_spec, frame, "the fixed part")
    frame[formula.response] = 0.0  # formulaic's spec may refer to the response
    try:
        with unseen_levels_as_errors("the fixed part"):
            prediction = encoding.X_for(frame) @ fit.beta
        if re == "none":
            return prediction
        for term, result in zip(encoding.terms, fit.terms):
            codes = term.codes_for(frame)
            unseen = codes < 0
            if unseen.any() and new_levels == "error":
                example = frame.loc[np.flatnonzero(unseen)[0], list(term.factors)].tolist()
                raise DataError(
                    f"newdata has {int(unseen.sum())} rows with levels of {term.group!r} the fit has not seen "
                    f"(first: {example}); use new_levels='population' to predict them without random effects."
                )
            where = f"the random term ({' + '.join(term.columns)} | {term.group})"
            check_categories(term.spec, frame, where)
            with unseen_levels_as_errors(where):
                values = term.values_for(frame)
            modes = np.where(unseen[:, None], 0.0, result.modes[np.where(unseen, 0, codes)])
            prediction += np.einsum("ij,ij->i", values, modes)
    except LmmfastError:
        raise
    except Exception as exc:  # formulaic: unseen categories in fixed effects, wrong types
        raise DataError(f"newdata cannot be used for prediction: {exc}") from exc
    return prediction
