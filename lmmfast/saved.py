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

from lmmfast.archive import read_archive
from lmmfast.control import Control
from lmmfast.convergence import ConvergenceCheck
from lmmfast.design.encoding import DesignEncoding, TermEncoding
from lmmfast.errors import SavedFitError
from lmmfast.factor.plan import FactorPlan
from lmmfast.fit import restore_prepared
from lmmfast.fitted import LmmResult
from lmmfast.formula import ModelFormula, RandomTermSpec
from lmmfast.formula.contrasts import MatrixCoding
from lmmfast.generalized.family import Family
from lmmfast.generalized.fit import restore_glmm
from lmmfast.generalized.prepare import prepare_glmm
from lmmfast.generalized.result import GlmmResult
from lmmfast.optsummary import OptSummary
from lmmfast.prepare import prepare
from lmmfast.result import RandomTermResult

#: The classes a saved fit's file may hold (beside formulaic's, which :mod:`lmmfast.archive` knows).
SAVED_CLASSES: tuple[type, ...] = (
    Control,
    ConvergenceCheck,
    DesignEncoding,
    FactorPlan,
    Family,
    MatrixCoding,
    ModelFormula,
    OptSummary,
    RandomTermResult,
    RandomTermSpec,
    TermEncoding,
)


def load(path: str | os.PathLike[str], data: object = None) -> LmmResult | GlmmResult:
    """Load a fit saved by :meth:`LmmResult.save <lmmfast.LmmResult.save>` or
    :meth:`GlmmResult.save <lmmfast.GlmmResult.save>`.

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
    LmmResult or GlmmResult

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
    if archive.kind not in ("lmm", "glmm"):
        raise SavedFitError(f"{os.fspath(path)!r} holds a fit of a kind this lmmfast does not load ({archive.kind!r}).")
    content = archive.content
    saved: LmmResult | GlmmResult
    if archive.kind == "lmm":
        table = content.get("coef_table")
        coef_table = None
        if table is not None:
            coef_table = pd.DataFrame(table["columns"], index=pd.Index(table["index"]))
        derivatives = content.get("variance_derivatives")
        saved = LmmResult.without_rows(content["fit"], content["cond_var"], derivatives, coef_table)
    else:
        saved = GlmmResult.without_rows(content["fit"], content["cond_var"])
    if data is None and archive.data is None:
        return saved
    rows = data if data is not None else archive.data
    weights = _given(saved, "weights", saved.weights_name, content.get("weights"))
    restored = _restored(saved, rows, weights, content)
    if restored.fixef_names != saved.fixef_names or restored.nobs != saved.nobs:
        raise SavedFitError(
            f"These data do not give the saved fit: {restored.nobs} observations and fixed effects "
            f"{list(restored.fixef_names)}, where the fit had {saved.nobs} and {list(saved.fixef_names)}."
        )
    kept: dict[str, Any] = {"data_name": saved.data_name, "fit_seconds": saved.fit_seconds, "version": saved.version}
    if data is None:  # the rows saved with a fit are its complete cases: what its data dropped is the record's
        kept["dropped_rows"] = saved.dropped_rows
    return replace(restored, **kept)


def _restored(
    saved: LmmResult | GlmmResult, rows: object, weights: str | np.ndarray | None, content: dict[str, Any]
) -> LmmResult | GlmmResult:
    """The model prepared again from ``rows`` as it was, and the fit restored at the saved
    optimum by one evaluation."""
    formula = saved.encoding.formula
    control = saved.optsummary.control
    if isinstance(saved, LmmResult):
        prepared = prepare(
            formula.text, rows, reml=saved.reml, weights=weights, control=control, contrasts=dict(formula.codings)
        )
        return LmmResult.of(restore_prepared(prepared, saved.optsummary, saved.convergence))
    offset = _given(saved, "offset", _offset_argument(saved), content.get("offset"))
    glmm = prepare_glmm(
        formula.text,
        rows,
        saved.family,
        nagq=saved.nagq,
        weights=weights,
        offset=offset,
        control=control,
        contrasts=dict(formula.codings),
    )
    return GlmmResult.of(glmm, restore_glmm(glmm, saved))


def _offset_argument(saved: GlmmResult) -> str | None:
    """What the fit's ``offset=`` argument was: its name is what follows the formula's own
    offsets in the fit's ``offset_name``."""
    if saved.offset_name is None:
        return None
    in_formula = " + ".join(f"offset({expression})" for expression in saved.encoding.formula.offsets)
    rest = saved.offset_name[len(in_formula) :].removeprefix(" + ")
    return rest or None


def _given(
    saved: LmmResult | GlmmResult, argument: str, name: str | None, values: np.ndarray | None
) -> str | np.ndarray | None:
    """The ``weights=`` or ``offset=`` argument to prepare the saved model again: the array
    saved with the rows, or the column or expression the fit names."""
    if values is not None:
        return values
    if name is None:
        return None
    if name == argument and name not in saved.encoding.column_kinds:
        raise SavedFitError(
            f"The fit's {argument} were given as an array, which a fit saved without its data does not hold; "
            "save it with include_data=True to restore it with its rows."
        )
    return name
