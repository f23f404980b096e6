"""Bring user data into one pandas frame holding only the model's columns, complete cases only.

The user's object is never modified: columns are copied out of it, and rows with missing
values in any column the model uses are dropped (lme4's ``na.omit``) and counted.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmfast.design.source import is_chunked
from lmmfast.errors import DataError

#: Up to this many columns, the model frame is built from a copy of each column's values; a
#: frame of more (a model of many responses has thousands) is one selection of all of them.
#: The first is the faster on a few columns, the second on thousands.
FEW_COLUMNS = 64


@dataclass(frozen=True)
class ModelFrame:
    """The complete cases of the columns a model uses.

    Attributes
    ----------
    frame : pandas.DataFrame
        Only the used columns, only complete rows, a fresh copy with a 0..n-1 index.
    dropped_rows : numpy.ndarray
        Positions (0-based, in the user's data) of the rows dropped for missing values.
    n_input_rows : int
        The number of rows the user passed.
    """

    frame: pd.DataFrame
    dropped_rows: np.ndarray
    n_input_rows: int


def _is_lazy_frame(data: object) -> bool:
    return type(data).__module__.split(".")[0] == "polars" and type(data).__name__ == "LazyFrame"


def _to_pandas(data: object, needed: Iterable[str]) -> pd.DataFrame:
    """View or copy ``data`` as a pandas DataFrame without modifying it (a polars LazyFrame
    is collected, only the ``needed`` columns of it)."""
    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__.split(".")[0]
    if _is_lazy_frame(data):
        present = set(column_names(data))
        wanted = [name for name in dict.fromkeys(needed) if name in present]
        return data.select(wanted).collect().to_pandas()  # type: ignore[attr-defined]
    if module == "polars":
        return data.to_pandas()  # type: ignore[attr-defined]
    if module == "pyarrow":
        return data.to_pandas()  # type: ignore[attr-defined]
    if isinstance(data, Mapping):
        lengths = {}
        for name, column in data.items():
            try:
                lengths[name] = len(column)
            except TypeError:
                raise DataError(
                    f"Column {name!r} of the dict is a {type(column).__name__}, not an array: "
                    "pass a dict of equal-length arrays or lists."
                ) from None
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{name!r}: {length}" for name, length in lengths.items())
            raise DataError(
                f"The dict's columns have unequal lengths ({detail}); every column needs one value per row."
            )
        return pd.DataFrame({name: np.asarray(column) for name, column in data.items()})
    if is_chunked(data):
        shown = repr(os.fspath(data)) if isinstance(data, (str, os.PathLike)) else f"a {type(data).__name__}"
        raise DataError(
            f"data is {shown}, to be read in chunks, which only lmmfast.lmm and the predictions of its fits do; "
            "here the data must be in memory: load them first, e.g. pandas.read_parquet(path)."
        )
    raise DataError(
        f"data must be a pandas or polars DataFrame (or LazyFrame), a pyarrow Table or a dict of arrays, "
        f"got {type(data).__name__}."
    )


def as_pandas(data: object) -> pd.DataFrame:
    """Any data container :func:`build_model_frame` takes, as a pandas DataFrame with all its
    columns (the caller's frame itself where it is one: never modified here).

    Examples
    --------
    >>> as_pandas({"x": [1, 2]}).shape
    (2, 1)
    """
    return _to_pandas(data, column_names(data))


def check_columns(available: Iterable[object], needed: Iterable[str]) -> list[str]:
    """The ``needed`` column names, once each, after checking that each is ``available``
    once (a :class:`DataError` naming the problem and the closest names otherwise)."""
    columns = [str(c) for c in available]
    counts = Counter(columns)
    wanted = list(dict.fromkeys(needed))
    clash = [c for c in wanted if counts[c] > 1]
    if clash:
        raise DataError(f"The data have more than one column named {clash[0]!r}; rename the duplicates.")
    for name in wanted:
        if name not in counts:
            close = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            shown = ", ".join(repr(c) for c in columns[:12]) + (", ..." if len(columns) > 12 else "")
            raise DataError(f"Column {name!r} is not in the data (columns: {shown}).{hint}")
    return wanted


def build_model_frame(data: object, needed: Iterable[str]) -> ModelFrame:
    """Copy the ``needed`` columns out of ``data`` and drop incomplete rows.

    Parameters
    ----------
    data : pandas.DataFrame, polars.DataFrame or LazyFrame, pyarrow.Table or dict of arrays
    needed : iterable of str
        Column names the model uses.

    Returns
    -------
    ModelFrame

    Examples
    --------
    >>> mf = build_model_frame({"y": [1.0, None, 3.0], "g": ["a", "b", "a"]}, ["y", "g"])
    >>> len(mf.frame), mf.dropped_rows.tolist()
    (2, [1])
    """
    needed = list(needed)
    frame = _to_pandas(data, needed)
    wanted = check_columns(frame.columns, needed)
    n_input = len(frame)
    if n_input == 0:
        raise DataError("The data have no rows.")
    selected, dropped = complete_cases(frame, wanted)
    if dropped.size == n_input:
        label_of = {str(label): label for label in frame.columns}
        missing = frame.loc[:, [label_of[name] for name in wanted]].isna()
        per_column = dict(zip(wanted, missing.sum(axis=0).astype(int).tolist()))
        worst = max(per_column, key=per_column.get)  # type: ignore[arg-type]
        raise DataError(
            f"Every row has a missing value in a column the model uses (column {worst!r} alone "
            f"misses {per_column[worst]} of {n_input}); no complete row is left."
        )
    return ModelFrame(frame=selected, dropped_rows=dropped, n_input_rows=n_input)


def complete_cases(frame: pd.DataFrame, wanted: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """A fresh copy of the ``wanted`` columns of ``frame`` (checked to exist once each) with
    the rows that miss a value in any of them dropped, and the positions of those rows: the
    model frame of a whole data set or of one chunk of one.

    Examples
    --------
    >>> frame, dropped = complete_cases(pd.DataFrame({"y": [1.0, None], "g": ["a", "b"]}), ["y", "g"])
    >>> len(frame), dropped.tolist()
    (1, [1])
    """
    label_of = {str(label): label for label in frame.columns}
    if len(wanted) <= FEW_COLUMNS:
        selected = pd.DataFrame({name: frame[label_of[name]].array.copy() for name in wanted}, copy=False)
    else:
        selected = frame.loc[:, [label_of[name] for name in wanted]].reset_index(drop=True).copy(deep=True)
        selected.columns = pd.Index(wanted)
    for name, dtype in zip(wanted, selected.dtypes):
        kind = dtype.kind
        if kind in "mM":
            raise DataError(
                f"Column {name!r} holds dates or durations ({dtype}); convert it to a number "
                "(e.g. days since the start) or to categories before fitting."
            )
        if kind == "c":
            raise DataError(f"Column {name!r} holds complex numbers; lmmfast models real-valued data only.")
    missing = selected.isna().any(axis=1).to_numpy()
    dropped = np.flatnonzero(missing)
    if dropped.size:
        selected = selected.loc[~missing].reset_index(drop=True)
    # object columns of numbers (a dict of lists with None, say) become numeric once the
    # missing values are gone; columns of strings stay as they are
    return selected.infer_objects(), dropped


def column_names(data: object) -> list[str]:
    """The column names of any supported container, as strings (empty if it has none)."""
    if _is_lazy_frame(data):
        return [str(n) for n in data.collect_schema().names()]  # type: ignore[attr-defined]
    names = getattr(data, "columns", None)
    if names is None and hasattr(data, "column_names"):
        names = data.column_names  # pyarrow
    if names is None and isinstance(data, dict):
        names = list(data.keys())
    return [str(n) for n in names] if names is not None else []


def data_name(data: object) -> str | None:
    """The name a summary prints on its ``Data:`` line (``DataFrame.attrs["name"]``)."""
    attrs = getattr(data, "attrs", None)
    name = attrs.get("name") if isinstance(attrs, dict) else None
    return str(name) if name is not None else None
