"""Row results of data read in chunks: fitted values, residuals and predictions, computed
chunk by chunk — lazily, one task per partition, for a Dask DataFrame (a Dask Series), and
one chunk after another for Parquet and Arrow (a ``pyarrow.ChunkedArray``).

Each chunk is predicted by a copy of the fit without its prepared model (what a saved fit
holds), so that a task carries the estimates and the design's encoding, not the data.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.design.data import complete_cases
from lmmfast.design.fixed import response_values
from lmmfast.design.source import ChunkedData, chunked_data, plain_frame
from lmmfast.predict import NEW_LEVELS, RANDOM_EFFECTS, predict
from lmmfast.validation import check_choice

#: What :func:`row_results` computes.
ROW_RESULTS = ("fitted", "response", "pearson")


def _without_model(fit: Any) -> Any:
    return dataclasses.replace(fit, prepared=None, scaled_residuals=None, fitted_values=None)


def _of_chunk(frame: pd.DataFrame, fit: Any, wanted: list[str], what: str) -> pd.Series:
    """``what`` for the complete rows of one chunk, indexed as they are in it."""
    complete, dropped = complete_cases(frame, wanted)
    keep = np.ones(len(frame), dtype=bool)
    keep[dropped] = False
    fitted = predict(fit, complete) if len(complete) else np.empty(0)
    values = fitted
    if what != "fitted" and len(complete):
        values = response_values(complete, fit.encoding.formula.response) - fitted
        if what == "pearson" and fit.weights_name is not None:
            values = values * np.sqrt(complete[fit.weights_name].to_numpy(dtype=np.float64))
    return pd.Series(values, index=frame.index[keep], name=what, dtype=np.float64)


def _predicted(frame: pd.DataFrame, fit: Any, re: str, new_levels: str) -> pd.Series:
    return pd.Series(predict(fit, frame, re=re, new_levels=new_levels), index=frame.index, name="predicted")


def _on_plain(frame: pd.DataFrame, function: Any) -> pd.Series:
    return function(plain_frame(frame))


def _collect(source: ChunkedData, columns: list[str], function: Any) -> Any:
    """``function`` of every chunk: a lazy Dask Series, or an Arrow array of all chunks."""
    if source.is_dask:
        on_partition = functools.partial(_on_plain, function=function)
        return source.data[columns].map_partitions(on_partition, meta=pd.Series(dtype=np.float64, name="value"))
    import pyarrow as pa

    arrays = [pa.array(function(frame).to_numpy(), type=pa.float64()) for frame in source.frames(columns)]
    return pa.chunked_array(arrays, type=pa.float64())


def row_results(fit: Any, what: str) -> Any:
    """Fitted values (``"fitted"``) or residuals (``"response"``, ``"pearson"``) of the complete
    rows of a fit of data read in chunks: a Dask Series (lazy, indexed as the data) for a
    Dask DataFrame, a ``pyarrow.ChunkedArray`` for Parquet and Arrow.

    Examples
    --------
    >>> import lmmfast, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleepstudy.parquet"
    >>> lmmfast.datasets.load("sleepstudy").to_parquet(path)
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", path)
    >>> residuals = row_results(fit, "response")
    >>> len(residuals), round(float(residuals[0].as_py()), 3)
    (180, -4.104)
    """
    check_choice("row result", what, ROW_RESULTS)
    source = fit.model.streamed.source
    wanted = [str(c) for c in fit.model.model_frame.frame.columns]
    return _collect(source, wanted, functools.partial(_of_chunk, fit=_without_model(fit), wanted=wanted, what=what))


def predict_chunks(fit: Any, newdata: object, *, re: str = "all", new_levels: str = "population") -> Any:
    """:func:`lmmfast.predict.predict` for new data read in chunks: a Dask Series (lazy) for
    a Dask DataFrame, a ``pyarrow.ChunkedArray`` for a Parquet path or an Arrow dataset."""
    check_choice("re", re, RANDOM_EFFECTS)
    check_choice("new_levels", new_levels, NEW_LEVELS)
    source = chunked_data(newdata)
    function = functools.partial(_predicted, fit=_without_model(fit), re=re, new_levels=new_levels)
    return _collect(source, source.column_names(), function)
