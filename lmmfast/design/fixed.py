"""The fixed-effects model matrix X and the response y, built by formulaic."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import model_matrix

from lmmfast.errors import DataError, FormulaError
from lmmfast.formula.cache import parsed
from lmmfast.formula.contrasts import plain_name

#: Relative tolerance below which a column counts as a combination of earlier ones (R's qr).
RANK_TOLERANCE = 1e-7

#: The same test on X'X (streamed data, whose rows are gone): the squared residual norm
#: relative to the squared column norm. Forming X'X squares the rounding of an exact alias
#: (relative 1e-16 of the column becomes up to ~1e-14 of its square over many rows), so the
#: squared tolerance 1e-14 could keep an aliased column; 1e-12 (1e-6 in norm) cannot, and
#: keeps every column more than 1e-6 away from the span of the earlier ones.
GRAM_RANK_TOLERANCE = 1e-12

#: formulaic builds model matrices as numpy arrays, not as pandas frames, which are slower to
#: build and which nothing here needs: the column names are in the model spec.
MATRIX_OUTPUT = "numpy"


@dataclass(frozen=True)
class FixedDesign:
    """Response and fixed-effects matrix, aliased columns already removed.

    Attributes
    ----------
    y : numpy.ndarray, shape (n,)
    X : numpy.ndarray, shape (n, p)
    names : tuple of str
        formulaic's column names of the kept columns.
    dropped : tuple of str
        Columns dropped because they were linear combinations of earlier ones (the caller
        reports them).
    spec : formulaic.ModelSpec or None
        How X was built, to build it again for new data.
    kept : tuple of int
        Which of ``spec``'s columns X holds.
    """

    y: np.ndarray
    X: np.ndarray
    names: tuple[str, ...]
    dropped: tuple[str, ...]
    spec: object = None
    kept: tuple[int, ...] = ()


def _independent_columns(X: np.ndarray) -> np.ndarray:
    """Indices of the columns kept by sequential Gram–Schmidt: each column is kept unless it
    lies (to ``RANK_TOLERANCE``) in the span of the columns kept before it, as R's ``qr``
    keeps the earlier of two aliased columns."""
    # einsum rather than BLAS's level 1: on long columns a BLAS call wakes (or competes with)
    # BLAS's worker threads, which cost up to 50 ms here against 1 ms for the arithmetic
    basis: list[np.ndarray] = []
    kept: list[int] = []
    for j in range(X.shape[1]):
        column = X[:, j].astype(np.float64, copy=True)
        norm = np.sqrt(np.einsum("i,i->", column, column))
        if norm == 0.0:
            continue
        for _ in range(2):  # twice is enough (Kahan–Parlett)
            for q in basis:
                column -= np.einsum("i,i->", q, column) * q
        residual = np.sqrt(np.einsum("i,i->", column, column))
        if residual > RANK_TOLERANCE * norm:
            basis.append(column / residual)
            kept.append(j)
    return np.asarray(kept, dtype=np.int64)


def independent_gram_columns(XtX: np.ndarray) -> np.ndarray:
    """The columns :func:`build_fixed_design` keeps, chosen from X'X alone: each column is
    kept unless its residual on the columns kept before it is small (``GRAM_RANK_TOLERANCE``).

    Examples
    --------
    >>> X = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    >>> independent_gram_columns(X.T @ X).tolist()
    [0, 1]
    """
    kept: list[int] = []
    factor = np.zeros((0, 0))
    for j in range(XtX.shape[0]):
        norm2 = float(XtX[j, j])
        if norm2 <= 0.0:
            continue
        cross = XtX[kept, j]
        projection = np.linalg.solve(factor, cross) if kept else cross
        residual2 = norm2 - float(projection @ projection)
        if residual2 > GRAM_RANK_TOLERANCE * norm2:
            grown = np.zeros((len(kept) + 1, len(kept) + 1))
            grown[:-1, :-1] = factor
            grown[-1, :-1] = projection
            grown[-1, -1] = np.sqrt(residual2)
            factor = grown
            kept.append(j)
    return np.asarray(kept, dtype=np.int64)


def _non_numeric_response_message(response: str, column: pd.Series) -> str:
    """Why a response of text or categories cannot be fitted, and what to do instead."""
    values = column.dropna()
    levels = pd.unique(values)
    as_numbers = pd.to_numeric(values, errors="coerce")
    if len(values) and as_numbers.notna().all():
        return (
            f"The response {response!r} must be numeric, but it holds numbers stored as text "
            f"({column.dtype}, e.g. {str(values.iloc[0])!r}); convert it with "
            f"data[{response!r}] = pd.to_numeric(data[{response!r}]) before fitting."
        )
    if len(levels) == 2:
        shown = " and ".join(repr(str(level)) for level in sorted(levels, key=str))
        return (
            f"The response {response!r} must be numeric, but it is categorical with two levels ({shown}). "
            "A binary outcome needs a logistic mixed model: lmmfast.glmm(formula, data, family='binomial') "
            "(lme4's glmer); recoding it to 0/1 would fit a linear probability model instead."
        )
    return (
        f"The response {response!r} must be numeric, but its values are of type {column.dtype} "
        f"({len(levels)} distinct values); a linear mixed model needs a numeric response."
    )


def _response(frame: pd.DataFrame, response: str, lhs: np.ndarray | pd.DataFrame | None) -> np.ndarray:
    if response in frame.columns:
        column = frame[response]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            raise DataError(_non_numeric_response_message(response, column))
        y = column.to_numpy(dtype=np.float64)
    else:
        if lhs is None or lhs.shape[1] != 1:
            raise FormulaError(f"The response {response!r} must evaluate to a single numeric column.")
        y = np.asarray(lhs, dtype=np.float64)[:, 0]
    if not np.all(np.isfinite(y)):
        raise DataError(f"The response {response!r} has infinite values; remove or recode those rows.")
    return y


def response_values(frame: pd.DataFrame, response: str) -> np.ndarray:
    """The response of complete-case data: a column, or an expression of columns.

    Examples
    --------
    >>> response_values(pd.DataFrame({"y": [1.0, 100.0]}), "np.log10(y)").tolist()
    [0.0, 2.0]
    """
    if response in frame.columns:
        return _response(frame, response, None)
    try:
        lhs = model_matrix(parsed(f"{response} ~ 1"), frame, na_action="raise").lhs
    except Exception as exc:  # formulaic raises many types; the cause is always the formula
        raise FormulaError(f"The response {response!r} could not be evaluated: {exc}") from exc
    return _response(frame, response, lhs)


def check_not_constant(response: str, low: float, high: float) -> None:
    """Raise a :class:`DataError` for a response whose smallest and largest values agree."""
    if low == high:
        raise DataError(f"The response {response!r} is constant ({low:g}); there is no variance to model.")


def is_binary(y: np.ndarray) -> bool:
    """Whether a (non-constant) response holds only the values 0 and 1.

    Examples
    --------
    >>> import numpy as np
    >>> is_binary(np.array([0.0, 1.0, 1.0])), is_binary(np.array([0.0, 0.5, 1.0]))
    (True, False)
    """
    return bool(np.all((y == 0.0) | (y == 1.0)))


@functools.cache
def intercept_spec() -> object:
    """formulaic's model spec of ``1``: it reads no data, so one serves every model (an
    intercept-only fixed part, random intercepts)."""
    return model_matrix("1", pd.DataFrame(index=range(1)), output=MATRIX_OUTPUT).model_spec


def build_fixed_design(
    frame: pd.DataFrame, response: str, fixed: str, *, whole: bool = True, spec: object = None
) -> FixedDesign:
    """Build y and X for ``response ~ fixed`` on complete-case data.

    ``whole=False`` builds them for one chunk of data streamed in chunks: every column is
    kept, and the checks that need all the rows (a constant response, aliased columns) are
    the caller's. ``spec``, formulaic's model spec of ``fixed`` learnt from other data (a
    :class:`FixedDesign`'s), builds X without learning it again; the caller has checked
    that it fits these data (:func:`lmmfast.design.encoding.spec_fits`).

    Parameters
    ----------
    frame : pandas.DataFrame
        The model frame (complete cases only).
    response : str
        The left-hand side of the formula.
    fixed : str
        The fixed-effects right-hand side in formulaic's syntax.

    Returns
    -------
    FixedDesign

    Examples
    --------
    >>> import pandas as pd
    >>> d = build_fixed_design(pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [0.0, 1.0, 2.0]}), "y", "x")
    >>> d.names
    ('Intercept', 'x')
    """
    if spec is None and fixed == "1":  # an intercept alone, the common case: no formulaic pass
        X, model_spec = np.ones((len(frame), 1)), intercept_spec()
    else:
        try:
            with np.errstate(all="ignore"):  # inf·0 in a product column is reported below, in words
                # the right-hand side alone: a response that is a column is read from the frame,
                # where formulaic would build a matrix of it at about the cost of X
                if spec is None:
                    rhs = model_matrix(parsed(fixed), frame, na_action="raise", output=MATRIX_OUTPUT)
                else:
                    rhs = spec.get_model_matrix(frame, na_action="raise", output=MATRIX_OUTPUT)  # type: ignore[attr-defined]
        except Exception as exc:  # formulaic raises many types; the cause is always the formula
            raise FormulaError(f"The fixed-effects part '{response} ~ {fixed}' could not be built: {exc}") from exc
        X, model_spec = np.asarray(rhs, dtype=np.float64), rhs.model_spec
    y = response_values(frame, response)
    if whole:
        check_not_constant(response, float(np.min(y)), float(np.max(y)))
    names = tuple(plain_name(str(c)) for c in model_spec.column_names)  # type: ignore[attr-defined]
    finite = np.isfinite(X).all(axis=0)
    if not finite.all():
        bad = names[int(np.flatnonzero(~finite)[0])]
        raise DataError(
            f"The fixed-effects column {bad!r} has infinite or undefined values (infinite predictors, or "
            "inf·0 in a product); remove or recode those rows."
        )
    if not whole:
        return FixedDesign(y=y, X=X, names=names, dropped=(), spec=model_spec, kept=tuple(range(X.shape[1])))
    kept = _independent_columns(X)
    dropped = tuple(name for j, name in enumerate(names) if j not in set(kept.tolist()))
    if dropped:
        X = np.ascontiguousarray(X[:, kept])
        names = tuple(names[j] for j in kept)
    return FixedDesign(y=y, X=X, names=names, dropped=dropped, spec=model_spec, kept=tuple(int(j) for j in kept))
