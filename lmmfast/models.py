"""Models prepared once and fitted many times: :class:`LinearMixedModel` and
:class:`GeneralizedLinearMixedModel` keep a model of one data set and fit it, or other data
of the same columns, by :func:`lmmfast.lmm`'s and :func:`lmmfast.glmm`'s paths, reusing the
design's encoding where it fits the new data (:func:`lmmfast.design.encoding.every_spec_fits`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lmmfast.api import fit_and_report, fit_and_report_glmm, glmm_settings
from lmmfast.control import Control, control_with
from lmmfast.design.source import require_in_memory
from lmmfast.diagnostics import resolve_checks
from lmmfast.errors import ArgumentError
from lmmfast.fitted import LmmResult
from lmmfast.generalized.family import Family
from lmmfast.generalized.prepare import prepare_glmm
from lmmfast.generalized.result import GlmmResult
from lmmfast.prepare import prepare
from lmmfast.validation import check_bool

__all__ = ["GeneralizedLinearMixedModel", "LinearMixedModel"]


def _fit_settings(
    checks: Mapping[str, str] | None, progress: bool | None, verbose: bool
) -> tuple[dict[str, str], bool | None, bool]:
    """A fit's ``checks``, ``progress`` and ``verbose``, validated before any work."""
    return (
        resolve_checks(checks),
        None if progress is None else check_bool("progress", progress),
        check_bool("verbose", verbose),
    )


def _require_columns(**given: object) -> None:
    """Raise an :class:`ArgumentError` for a per-row argument (weights, offset) that was
    given as an array: it belongs to the data the model was prepared from, not to others."""
    for name, value in given.items():
        if value is not None and not isinstance(value, str):
            raise ArgumentError(
                f"The model's {name} were given as an array, which belongs to the data it was prepared from; "
                f"to fit other data with {name}, prepare the model with {name}= naming their column."
            )


class LinearMixedModel:
    """A linear mixed model prepared once, then fitted to its data or to other data of the
    same columns — each fit :func:`lmmfast.lmm`'s, without learning the design's encoding again
    where the predictors have the kinds and the categorical ones the levels they had here
    (statsmodels' ``MixedLM``, MixedModels.jl's ``LinearMixedModel``).

    For loops over many data sets of one shape: bootstrap resamples of subjects,
    cross-validation folds, a tool's repeated calls. A new response on the same rows is
    cheaper still: :meth:`lmmfast.LmmResult.refit`.

    Parameters
    ----------
    formula, data, reml, weights, contrasts, factorization, memory_budget, optimizer, control
        As for :func:`lmmfast.lmm`; ``data`` must be in memory. Weights given as an array belong to
        ``data`` alone: to fit other data with weights, name their column instead. The
        codings of categorical predictors are fixed here (``contrasts``, else the
        package-wide default at this call).

    Attributes
    ----------
    formula : str
    reml : bool
    prepared : PreparedModel
        The model of ``data``, ready to optimise (:func:`lmmfast.prepare.prepare`'s).

    Raises
    ------
    As :func:`lmmfast.lmm`.

    Examples
    --------
    >>> import lmmfast
    >>> sleepstudy = lmmfast.datasets.load("sleepstudy")
    >>> model = lmmfast.LinearMixedModel("Reaction ~ Days + (Days | Subject)", sleepstudy)
    >>> round(model.fit().objective, 3)
    1743.628
    >>> first_week = sleepstudy[sleepstudy["Days"] < 7]
    >>> fit = model.fit(first_week)
    >>> fit.nobs, round(fit.objective, 3) == round(lmmfast.lmm(model.formula, first_week).objective, 3)
    (126, True)
    """

    def __init__(
        self,
        formula: str,
        data: object,
        *,
        reml: bool = True,
        weights: str | Sequence[float] | np.ndarray | None = None,
        contrasts: Mapping[str, Any] | None = None,
        factorization: str | None = None,
        memory_budget: float | None = None,
        optimizer: str | None = None,
        control: Control | None = None,
    ) -> None:
        require_in_memory(data, "lmmfast.LinearMixedModel")
        control = control_with(control, optimizer=optimizer, factorization=factorization, memory_budget=memory_budget)
        self.prepared = prepare(formula, data, reml=reml, weights=weights, control=control, contrasts=contrasts)
        self.formula = formula
        self.reml = self.prepared.reml
        self._weights = weights
        self._contrasts = contrasts

    def __repr__(self) -> str:
        criterion = "REML" if self.reml else "ML"
        return f"LinearMixedModel({self.formula!r}, {criterion}, prepared from {len(self.prepared.fixed.y)} rows)"

    def fit(
        self,
        data: object = None,
        *,
        start: np.ndarray | Sequence[float] | None = None,
        checks: Mapping[str, str] | None = None,
        progress: bool | None = None,
        verbose: bool = False,
    ) -> LmmResult:
        """Fit the model to the data it was prepared from, or to ``data``.

        Parameters
        ----------
        data : DataFrame, pyarrow Table or dict of arrays, optional
            Data in memory with the columns the model uses; never modified. The grouping
            factors' levels may differ freely; where a predictor's kind or a categorical
            predictor's levels differ, the encoding is learnt from ``data``, as :func:`lmmfast.lmm`
            would.
        start, checks, progress, verbose
            As for :func:`lmmfast.lmm`.

        Returns
        -------
        LmmResult
            The fit :func:`lmmfast.lmm` gives for the same formula, data and settings.

        Raises
        ------
        DataError
            As :func:`lmmfast.lmm`, for unusable data.
        ArgumentError
            For other data, when the weights were given as an array.
        """
        actions, progress, verbose = _fit_settings(checks, progress, verbose)
        if data is None:
            return fit_and_report(self.prepared, actions, start, progress, verbose)
        require_in_memory(data, "LinearMixedModel.fit")
        _require_columns(weights=self._weights)
        prepared = prepare(
            self.formula,
            data,
            reml=self.reml,
            weights=self._weights,
            control=self.prepared.control,
            contrasts=self._contrasts,
            like=self.prepared.encoding,
        )
        return fit_and_report(prepared, actions, start, progress, verbose)


class GeneralizedLinearMixedModel:
    """A generalized linear mixed model prepared once, then fitted to its data or to other
    data of the same columns — each fit :func:`lmmfast.glmm`'s, without learning the design's
    encoding again where the predictors have the kinds and the categorical ones the levels
    they had here: :class:`LinearMixedModel` for binomial and Poisson responses.

    Parameters
    ----------
    formula, data, family, link, weights, offset, nagq, contrasts, factorization, memory_budget, control, nAGQ
        As for :func:`lmmfast.glmm`; ``data`` must be in memory. Weights and offsets given as arrays
        belong to ``data`` alone: to fit other data with them, name their columns instead.

    Attributes
    ----------
    formula : str
    family : Family
    nagq : int
    prepared : PreparedGlmm
        The model of ``data``, ready to optimise.

    Examples
    --------
    >>> import lmmfast
    >>> verbagg = lmmfast.datasets.load("verbagg")
    >>> model = lmmfast.GeneralizedLinearMixedModel("r2 ~ Anger + btype + (1 | id) + (1 | item)", verbagg, nagq=0)
    >>> women = verbagg[verbagg["Gender"] == "F"]
    >>> fit = model.fit(women)
    >>> fit.nobs, round(fit.objective, 4) == round(lmmfast.glmm(model.formula, women, nagq=0).objective, 4)
    (5832, True)
    """

    def __init__(
        self,
        formula: str,
        data: object,
        family: str | Family = "binomial",
        *,
        link: str | None = None,
        weights: str | Sequence[float] | np.ndarray | None = None,
        offset: str | Sequence[float] | np.ndarray | None = None,
        nagq: int = 1,
        contrasts: Mapping[str, Any] | None = None,
        factorization: str | None = None,
        memory_budget: float | None = None,
        control: Control | None = None,
        nAGQ: int | None = None,  # lme4's spelling, accepted for its users
    ) -> None:
        nagq, chosen, control = glmm_settings(family, link, nagq, nAGQ, control, factorization, memory_budget)
        require_in_memory(data, "lmmfast.GeneralizedLinearMixedModel")
        self.prepared = prepare_glmm(
            formula, data, chosen, nagq=nagq, weights=weights, offset=offset, control=control, contrasts=contrasts
        )
        self.formula = formula
        self.family = chosen
        self.nagq = nagq
        self._weights, self._offset, self._contrasts = weights, offset, contrasts
        self._encoding = self.prepared.encoding

    def __repr__(self) -> str:
        return (
            f"GeneralizedLinearMixedModel({self.formula!r}, {self.family.name} ({self.family.link}), "
            f"nagq={self.nagq}, prepared from {len(self.prepared.response.y)} rows)"
        )

    def fit(
        self,
        data: object = None,
        *,
        start: np.ndarray | Sequence[float] | None = None,
        checks: Mapping[str, str] | None = None,
        progress: bool | None = None,
        verbose: bool = False,
    ) -> GlmmResult:
        """Fit the model to the data it was prepared from, or to ``data``.

        Parameters
        ----------
        data : DataFrame, pyarrow Table or dict of arrays, optional
            As for :meth:`LinearMixedModel.fit`.
        start, checks, progress, verbose
            As for :func:`lmmfast.glmm`.

        Returns
        -------
        GlmmResult
            The fit :func:`lmmfast.glmm` gives for the same formula, data and settings.

        Raises
        ------
        DataError
            As :func:`lmmfast.glmm`, for unusable data.
        ArgumentError
            For other data, when the weights or the offset were given as an array.
        """
        actions, progress, verbose = _fit_settings(checks, progress, verbose)
        began = time.perf_counter()
        if data is None:
            return fit_and_report_glmm(self.prepared, actions, start, progress, verbose, began)
        require_in_memory(data, "GeneralizedLinearMixedModel.fit")
        _require_columns(weights=self._weights, offset=self._offset)
        prepared = prepare_glmm(
            self.formula,
            data,
            self.family,
            nagq=self.nagq,
            weights=self._weights,
            offset=self._offset,
            control=self.prepared.control,
            contrasts=self._contrasts,
            like=self._encoding,
        )
        return fit_and_report_glmm(prepared, actions, start, progress, verbose, began)
