"""Many responses, one design: :func:`lmm_many` fits the same model to each of many response
columns (EEG time points, voxels, genes, a questionnaire's items).

The design — model frame, X, the random-effects terms, the cross-products' pattern and the
factor's set-up — is prepared once; each response then forms only its own cross-products and
is fitted by the one fit path from its own starting values, exactly as ``lmm`` would fit it
alone. Responses are spread over worker processes with ``processes=``, each holding the
prepared design once.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.control import Control
from lmmfast.design.data import as_pandas, build_model_frame
from lmmfast.design.source import require_in_memory
from lmmfast.errors import ArgumentError, ConvergenceWarning, DataError
from lmmfast.fit import response_estimates
from lmmfast.inference.bootstrap import check_client, run_replicates
from lmmfast.prepare import PreparedModel, prepare
from lmmfast.validation import check_bool, check_count

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def _fit_response(payload: tuple[PreparedModel, np.ndarray], column: int) -> tuple[np.ndarray, bool]:
    """One response's fit, as a row: β, their standard errors, σ, θ, objective, evaluations,
    singular (1/0); and whether it converged."""
    prepared, responses = payload
    fit = response_estimates(prepared, responses[:, column])
    row = np.concatenate(
        [
            fit.beta,
            np.sqrt(np.diag(fit.beta_covariance)),
            [fit.sigma],
            fit.theta,
            [fit.objective, fit.n_evals, float(fit.singular)],
        ]
    )
    return row, fit.converged


def lmm_many(
    formula: str,
    data: object,
    responses: Sequence[str] | np.ndarray,
    *,
    reml: bool = True,
    weights: str | Sequence[float] | np.ndarray | None = None,
    contrasts: Mapping[str, Any] | None = None,
    control: Control | None = None,
    processes: int = 1,
    progress: bool = False,
    client: Any = None,
) -> pd.DataFrame:
    """Fit ``formula``'s model to each of many responses of one design.

    Parameters
    ----------
    formula : str
        The right-hand side, ``"~ Days + (Days | Subject)"``: the responses are given apart.
    data : DataFrame, pyarrow Table, polars DataFrame or dict of arrays
    responses : list of str, or a 2-D array
        Columns of ``data``, each a numeric response observed on every row the design uses;
        or a matrix with one row per row of ``data`` and one column per response (EEG time
        points, voxels), whose rows in the table are numbered from 0.
    reml, weights, contrasts, control
        As for :func:`lmmfast.lmm`.
    processes : int, default 1
        Worker processes sharing the responses; the results are the same however many.
    progress : bool, default False
        A progress bar over the responses.
    client : distributed.Client, optional
        Spread the responses over a Dask cluster's workers instead (the design and the
        responses are sent to each once); the same results.

    Returns
    -------
    pandas.DataFrame
        One row per response (indexed by its name): the fixed effects, their standard errors
        (``se(name)``), ``sigma``, the θ entries, ``objective``, ``n_evals``, ``singular`` and
        ``converged`` — the numbers ``lmm`` gives each response alone.

    Raises
    ------
    DataError
        For a response that is missing, not numeric, or has missing values (every response
        must be observed on the same rows).

    Examples
    --------
    >>> import lmmfast
    >>> data = lmmfast.datasets.load("sleepstudy").assign(Twice=lambda d: 2 * d.Reaction)
    >>> table = lmm_many("~ Days + (Days | Subject)", data, ["Reaction", "Twice"])
    >>> table.loc[:, ["Days", "se(Days)"]].round(3).values.tolist()
    [[10.467, 1.546], [20.935, 3.092]]
    """
    numbered = isinstance(responses, np.ndarray)
    if isinstance(responses, np.ndarray):
        data, responses = _with_matrix(data, responses)
    names = _checked_responses(responses)
    processes = check_count("processes", processes)
    progress = check_bool("progress", progress)
    check_client(client, processes)
    rhs = _right_hand_side(formula)
    first = names[0] if _NAME.match(names[0]) else f"`{names[0]}`"
    require_in_memory(data, "lmmfast.lmm_many")
    prepared = prepare(f"{first} ~ {rhs}", data, reml=reml, weights=weights, control=control, contrasts=contrasts)
    prepared = replace(prepared, control=replace(prepared.control, threads=1))
    values = _response_values(data, names, prepared)
    columns = [
        *prepared.fixed.names,
        *(f"se({name})" for name in prepared.fixed.names),
        "sigma",
        *prepared.layout.names([t.group for t in prepared.terms], [t.columns for t in prepared.terms]),
        "objective",
        "n_evals",
        "singular",
    ]
    results = run_replicates(
        (prepared, values),
        _fit_response,
        range(len(names)),
        processes=processes,
        progress=progress,
        desc="lmm_many",
        client=client,
    )
    index = pd.RangeIndex(len(names), name="response") if numbered else pd.Index(names, name="response")
    table = pd.DataFrame(np.vstack([row for row, _ in results]), index=index, columns=columns)
    table["n_evals"] = table["n_evals"].astype(np.int64)
    table["singular"] = table["singular"].astype(bool)
    table["converged"] = [converged for _, converged in results]
    failed = [name for name, converged in zip(table.index, table["converged"]) if not converged]
    if failed:
        shown = ", ".join(map(repr, failed[:10])) + (", ..." if len(failed) > 10 else "")
        warnings.warn(
            ConvergenceWarning(
                f"{len(failed)} of {len(names)} responses did not converge ({shown}); their rows may be off: fit "
                "them alone with lmm to see the optimiser's message."
            ),
            stacklevel=2,
        )
    return table


def _with_matrix(data: object, matrix: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    """The data with the matrix's columns added under names no column has, and those names."""
    if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.issubdtype(matrix.dtype, np.number):
        raise ArgumentError(
            f"responses as an array must be a numeric matrix, one row per row of data and one column per "
            f"response; got shape {matrix.shape} of {matrix.dtype}."
        )
    frame = as_pandas(data)
    if matrix.shape[0] != len(frame):
        raise DataError(
            f"responses has {matrix.shape[0]} rows and data {len(frame)}; the matrix needs one row per row of data."
        )
    taken = {str(c) for c in frame.columns}
    prefix = "response"
    while any(name.startswith(prefix) for name in taken):
        prefix = "_" + prefix
    names = [f"{prefix}{i}" for i in range(matrix.shape[1])]
    added = pd.DataFrame(np.asarray(matrix, dtype=np.float64), columns=names, index=frame.index)
    return pd.concat([frame, added], axis=1), names


def _checked_responses(responses: object) -> list[str]:
    if isinstance(responses, str) or not isinstance(responses, Sequence) or not responses:
        raise ArgumentError(
            f"responses must be a non-empty list of column names, got {type(responses).__name__}: "
            "lmm_many fits the same model to each."
        )
    names = list(responses)
    if not all(isinstance(name, str) for name in names):
        raise ArgumentError("responses must be column names (strings).")
    if len(set(names)) != len(names):
        duplicated = sorted({name for name in names if names.count(name) > 1})
        raise ArgumentError(f"responses names {', '.join(map(repr, duplicated))} more than once.")
    return names


def _right_hand_side(formula: object) -> str:
    if not isinstance(formula, str) or not formula.strip().startswith("~"):
        raise ArgumentError(
            f"formula must be the model's right-hand side, such as '~ Days + (Days | Subject)', got {formula!r}: "
            "lmm_many takes the responses from responses=."
        )
    return formula.strip()[1:].strip()


def _response_values(data: object, names: list[str], prepared: PreparedModel) -> np.ndarray:
    """The responses on the rows the design uses, n × len(names)."""
    frame = build_model_frame(data, names)
    for name, dtype in zip(names, frame.frame.dtypes):
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise DataError(f"The response {name!r} is not numeric ({dtype}).")
    if frame.dropped_rows.size:
        missing = _first_with_missing(data, names)
        raise DataError(
            f"The response {missing!r} has missing values; lmm_many fits every response on the same rows. "
            "Drop those rows from the data for all responses, or fit that response alone with lmm."
        )
    keep = np.ones(frame.n_input_rows, dtype=bool)
    keep[prepared.model_frame.dropped_rows] = False
    return np.ascontiguousarray(frame.frame[names].to_numpy(dtype=np.float64)[keep])


def _first_with_missing(data: object, names: list[str]) -> str:
    for name in names:
        if build_model_frame(data, [name]).dropped_rows.size:
            return name
    return names[0]
