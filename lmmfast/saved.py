"""Loading saved fits: :func:`load`, the other half of :meth:`lmmfast.LmmResult.save`.

A fit loaded without data holds what its file holds (see :mod:`lmmfast.archive`); given its
rows — saved with it, or passed as ``data=`` — it is restored whole by one evaluation of the
criterion at the saved θ, no optimisation (:func:`lmmfast.fit.restore_prepared`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.archive import Archive, read_archive
from lmmfast.control import Control
from lmmfast.convergence import ConvergenceCheck
from lmmfast.design.encoding import DesignEncoding, TermEncoding
from lmmfast.errors import SavedFitError
from lmmfast.factor.plan import FactorPlan
from lmmfast.fit import restore_prepared
from lmmfast.fitted import LmmResult
from lmmfast.formula import ModelFormula, RandomTermSpec
from lmmfast.optsummary import OptSummary
from lmmfast.prepare import prepare
from lmmfast.result import RandomTermResult

#: The classes a saved fit's file may hold (beside formulaic's, which :mod:`lmmfast.archive` knows).
SAVED_CLASSES: tuple[type, ...] = (
    Control,
    ConvergenceCheck,
    DesignEncoding,
    FactorPlan,
    ModelFormula,
    OptSummary,
    RandomTermResult,
    RandomTermSpec,
    TermEncoding,
)


def load(path: str | os.PathLike[str], data: object = None) -> LmmResult:
    """Load a fit saved by :meth:`LmmResult.save <lmmfast.LmmResult.save>`.

    Parameters
    ----------
    path : str or pathlib.Path
    data : DataFrame, pyarrow Table, polars DataFrame or file name, optional
        The data the model was fitted to. With them (or with rows saved in the file), the fit
        is restored whole from one evaluation at the saved θ — residuals, refits, profiles
        and the bootstrap work as on the original; without them, everything that does not
        need the rows does (summary, predictions, tables, intervals by Wald).

    Returns
    -------
    LmmResult

    Raises
    ------
    SavedFitError
        For a file that is not a saved fit, or data that do not give the saved fit.

    Examples
    --------
    >>> import lmmfast, tempfile, pathlib
    >>> data = lmmfast.datasets.load("sleepstudy")
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.lmmfast"
    >>> fit.save(path)
    >>> loaded = load(path)
    >>> loaded.has_data, bool(np.array_equal(loaded.predict(data), fit.predict(data)))
    (False, True)
    >>> load(path, data=data).residuals()[:2].round(2).tolist()
    [-4.1, -14.63]
    """
    archive = read_archive(path, {f"{cls.__module__}.{cls.__qualname__}": cls for cls in SAVED_CLASSES})
    if archive.kind != "lmm":
        raise SavedFitError(f"{os.fspath(path)!r} holds a fit of a kind this lmmfast does not load ({archive.kind!r}).")
    return _linear(archive, data)


def _linear(archive: Archive, data: object) -> LmmResult:
    content = archive.content
    record: dict[str, Any] = content["fit"]
    table = content.get("coef_table")
    coef_table = None
    if table is not None:
        coef_table = pd.DataFrame(table["columns"], index=pd.Index(table["index"], dtype=object))
    saved = LmmResult.without_rows(record, content["cond_var"], content.get("variance_derivatives"), coef_table)
    if data is not None:
        return _restored(saved, data, content.get("weights"), saved_rows=False)
    if archive.data is not None:
        return _restored(saved, archive.data, content.get("weights"), saved_rows=True)
    return saved


def _restored(saved: LmmResult, rows: object, weights: np.ndarray | None, *, saved_rows: bool) -> LmmResult:
    """``saved`` with its rows: the model prepared again from them, as it was, and the fit
    restored at the saved θ. The rows saved with a fit are its complete cases; the rows its
    own data dropped are then the saved record's."""
    formula = saved.encoding.formula
    if weights is None and saved.weights_name is not None and saved.weights_name not in saved.encoding.column_kinds:
        raise SavedFitError(
            "The fit was weighted by an array of weights, which a fit saved without its data does not hold; "
            "save it with include_data=True to restore it with its rows."
        )
    prepared = prepare(
        formula.text,
        rows,
        reml=saved.reml,
        weights=weights if weights is not None else saved.weights_name,
        control=saved.optsummary.control,
        contrasts=dict(formula.codings),
    )
    restored = restore_prepared(prepared, saved.optsummary, saved.convergence)
    if restored.fixef_names != saved.fixef_names or restored.nobs != saved.nobs:
        raise SavedFitError(
            f"These data do not give the saved fit: {restored.nobs} observations and fixed effects "
            f"{list(restored.fixef_names)}, where the fit had {saved.nobs} and {list(saved.fixef_names)}."
        )
    keep: dict[str, Any] = {"data_name": saved.data_name, "fit_seconds": saved.fit_seconds, "version": saved.version}
    if saved_rows:
        keep["dropped_rows"] = saved.dropped_rows
    return LmmResult.of(replace(restored, **keep))
