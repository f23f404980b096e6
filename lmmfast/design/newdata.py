"""Checks that new data (for predictions) can be encoded the way the fit's data were.

formulaic encodes a level it has not seen as a row of zeros (the baseline's prediction) and
only warns, and it reads a column of numbers stored as text as a categorical factor. Either
would give a plausible, wrong prediction; these checks turn both into a :class:`DataError`
that names the column, the offending values and what the model knows.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping

import pandas as pd
from formulaic.errors import DataMismatchWarning

from lmmfast.design.encoding import column_kind
from lmmfast.errors import DataError

#: How many levels a message lists before it says "..."
SHOWN_LEVELS = 12

_CALL_OF_ONE_COLUMN = re.compile(r"^C\(\s*([^,()]+?)\s*(,.*)?\)$")


def _shown(values: Iterable[object]) -> str:
    values = list(values)
    listed = ", ".join(repr(_plain(v)) for v in values[:SHOWN_LEVELS])
    return listed + (f", ... ({len(values)} in all)" if len(values) > SHOWN_LEVELS else "")


def _plain(value: object) -> object:
    """numpy scalars as Python ones, so that messages show ``7``, not ``np.int64(7)``."""
    return value.item() if hasattr(value, "item") else value


def check_column_types(fitted: Mapping[str, tuple[str, str]], new: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise a :class:`DataError` for a column whose kind (numeric, boolean, text or
    categorical) differs between the fit's data (``fitted``: column → ``(kind, dtype)``, as
    :func:`lmmfast.design.encoding.column_kinds` gives them) and the new data.

    Examples
    --------
    >>> from lmmfast.design.encoding import column_kinds
    >>> fitted = column_kinds(pd.DataFrame({"x": [1.0, 2.0]}))
    >>> check_column_types(fitted, pd.DataFrame({"x": ["3", "4"]}), ["x"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lmmfast.errors.DataError: Column 'x' of newdata holds numbers stored as text (str), ... pd.to_numeric(newdata['x']).
    """
    for name in columns:
        if name not in fitted or name not in new.columns:
            continue
        (was, dtype), now = fitted[name], column_kind(new[name])
        if was == now or {was, now} == {"numeric", "boolean"}:
            continue
        if was == "numeric" and pd.to_numeric(new[name], errors="coerce").notna().all():
            raise DataError(
                f"Column {name!r} of newdata holds numbers stored as text ({new[name].dtype}), but numbers in the "
                f"fit's data; convert it with newdata[{name!r}] = pd.to_numeric(newdata[{name!r}])."
            )
        raise DataError(
            f"Column {name!r} of newdata is {now} ({new[name].dtype}), but was {was} ({dtype}) in the "
            "fit's data; give it the type it had when the model was fitted."
        )


def check_categories(spec: object, frame: pd.DataFrame, where: str) -> None:
    """Raise a :class:`DataError` when ``frame`` has a level of a categorical predictor that
    the model spec (formulaic's, from the fit) has not seen.

    Parameters
    ----------
    spec : formulaic.ModelSpec
        How the fit's matrix was built; its encoder state holds every factor's levels.
    frame : pandas.DataFrame
        The new data.
    where : str
        The part of the model, for the message (``"the fixed part"``).

    Examples
    --------
    >>> from formulaic import model_matrix
    >>> spec = model_matrix("x", pd.DataFrame({"x": ["a", "b", "a"]})).model_spec
    >>> check_categories(spec, pd.DataFrame({"x": ["a", "c"]}), "the fixed part")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lmmfast.errors.DataError: Column 'x' of newdata has a level ... ('c', in 1 row); the fixed part knows ... 'b'. ...
    """
    for expression, (kind, state) in spec.encoder_state.items():  # type: ignore[attr-defined]
        if str(getattr(kind, "value", kind)) != "categorical":
            continue
        column = column_of(expression, frame.columns)
        if column is None:
            continue  # an expression of several columns: unseen_levels_as_errors catches formulaic's warning
        known = list(state.get("categories", []))
        values = frame[column]
        unseen_rows = ~values.isin(known)
        if not unseen_rows.any():
            continue
        unseen = pd.unique(values[unseen_rows])
        count = int(unseen_rows.sum())
        raise DataError(
            f"Column {column!r} of newdata has {'a level' if len(unseen) == 1 else 'levels'} the fit has not seen "
            f"({_shown(unseen)}, in {count} row{'s' if count != 1 else ''}); {where} knows the levels "
            f"{_shown(known)}. The model has no estimate for a new level: remove those rows or give them a known level."
        )


def column_of(expression: str, columns: Collection[object]) -> str | None:
    """The data column (one of ``columns``) whose values are the levels of a categorical
    factor: the factor itself (``Machine``) or the one column inside ``C(...)``; None for
    anything else."""
    if expression in columns:
        return expression
    match = _CALL_OF_ONE_COLUMN.match(expression)
    if match and match.group(1).strip("`") in columns:
        return match.group(1).strip("`")
    return None


@contextlib.contextmanager
def unseen_levels_as_errors(where: str) -> Iterator[None]:
    """Turn formulaic's warning about levels it has not seen (cast to missing, which would
    predict the baseline) into a :class:`DataError`, for factors :func:`check_categories`
    cannot read a column from."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=DataMismatchWarning)
        # pandas' deprecation note that accompanies formulaic's cast; the error says it all
        warnings.filterwarnings("ignore", message="Constructing a Categorical with a dtype")
        try:
            yield
        except DataMismatchWarning as warning:
            raise DataError(f"newdata has levels that {where} has not seen: {warning}") from None
