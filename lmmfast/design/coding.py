"""Which coding each categorical predictor of a model gets: the call's ``contrasts=``, else
the package-wide default (:func:`lmmfast.set_options`)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from lmmfast.design.variables import formula_variables
from lmmfast.errors import ArgumentError
from lmmfast.formula import ModelFormula
from lmmfast.formula.contrasts import MatrixCoding
from lmmfast.options import CONTRAST_CODINGS, get_options
from lmmfast.validation import check_choice


def _categorical(column: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def resolve_codings(
    contrasts: Mapping[str, object] | None, model: ModelFormula, frame: pd.DataFrame
) -> dict[str, str | MatrixCoding]:
    """The coding of every categorical predictor the model's fixed part or random terms use.

    Raises
    ------
    ArgumentError
        For a coding that is neither one of :data:`lmmfast.options.CONTRAST_CODINGS` nor a
        valid matrix (:meth:`lmmfast.formula.contrasts.MatrixCoding.of`), a column
        the predictors do not use, or a numeric column.

    Examples
    --------
    >>> from lmmfast.formula import parse_formula
    >>> frame = pd.DataFrame({"y": [1.0, 2.0], "f": ["a", "b"], "x": [0.0, 1.0], "g": ["u", "v"]})
    >>> resolve_codings({"f": "sum"}, parse_formula("y ~ f + x + (1 | g)"), frame)
    {'f': 'sum'}
    """
    if contrasts is not None and not isinstance(contrasts, Mapping):
        raise ArgumentError(
            f"contrasts must be a dict of column → coding, such as {{'spkr': 'sum'}}, got {type(contrasts).__name__}."
        )
    available = set(frame.columns)
    used = formula_variables(model.fixed, "the fixed part", available)
    for spec in model.random:
        used |= formula_variables(spec.expr, f"the random term {spec.source}", available)
    categorical = {name for name in used if name in available and _categorical(frame[name])}
    default = get_options()["contrasts"]
    codings: dict[str, str | MatrixCoding] = dict.fromkeys(sorted(categorical), default)
    for name, coding in (contrasts or {}).items():
        if isinstance(coding, str):
            check_choice(f"the coding of {name!r}", coding, CONTRAST_CODINGS)
        if name not in used:
            raise ArgumentError(
                f"contrasts names {name!r}, which the model's predictors do not use "
                f"(its categorical predictors: {', '.join(sorted(categorical)) or 'none'})."
            )
        if name not in categorical:
            raise ArgumentError(
                f"contrasts names {name!r}, a numeric column; contrasts code categorical predictors. "
                f"Convert it first (data[{name!r}].astype(str)) if it is a factor."
            )
        codings[name] = coding if isinstance(coding, str) else MatrixCoding.of(name, coding, _levels(frame[name]))
    return codings


def _levels(column: pd.Series) -> list[object]:
    """A factor's levels in formulaic's order: a categorical's own, else sorted."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return list(column.cat.categories)
    return sorted(pd.unique(column.dropna()))
