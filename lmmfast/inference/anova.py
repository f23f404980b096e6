"""Likelihood-ratio comparison of nested models (lme4's ``anova(m0, m1)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.distributions import chi2_sf
from lmmfast.errors import ArgumentError, DataError
from lmmfast.fit import refit_ml
from lmmfast.result import LmmFit, MixedFit
from lmmfast.validation import check_bool


def anova(*fits: MixedFit, names: Sequence[str] | None = None, refit: bool = True) -> pd.DataFrame:
    """Compare models by likelihood-ratio tests; REML fits are refitted by ML first, as lme4 does.
    Generalized fits (:func:`lmmfast.glmm`) are compared with generalized fits of the same
    family and approximation.

    The models are ordered by their number of parameters (a stable sort, as lme4), whatever
    the order they are given in, and each is tested against the one above it.

    Parameters
    ----------
    *fits : LmmFit or GlmmResult
        Two or more fits of the same response to the same observations, usually nested.
    names : sequence of str, optional
        A label per fit, in the order given (default: their formulas).
    refit : bool, default True
        Refit REML fits by ML first (lme4's default). ``False`` compares the REML
        likelihoods themselves (lme4's ``refit = FALSE``), which needs the same fixed effects
        in every model: the test of random-effects terms.

    Returns
    -------
    pandas.DataFrame
        One row per model, indexed by its label, from the fewest parameters to the most:
        ``npar, aic, bic, loglik, deviance, chisq, df, p_value`` (the test columns compare
        each model with the one above it).

    Raises
    ------
    DataError
        For models that are not comparable: different responses, different numbers of
        observations, different data of the same size, or different prior weights; linear
        and generalized fits, or generalized fits of different families or approximations.

    Examples
    --------
    >>> import lmmfast
    >>> data = lmmfast.datasets.load("sleepstudy")
    >>> small = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", data, reml=False)
    >>> big = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data, reml=False)
    >>> table = anova(big, small, names=["slopes", "intercepts"])
    >>> list(table.index), round(float(table.loc["slopes", "chisq"]), 3)
    (['intercepts', 'slopes'], 42.139)
    """
    if len(fits) < 2 or not all(isinstance(f, MixedFit) for f in fits):
        raise ArgumentError("anova needs two or more fitted models (results of lmmfast.lmm or lmmfast.glmm).")
    refit = check_bool("refit", refit)
    labels = _labels(fits, names)
    _check_comparable(fits, labels)
    if not refit:
        _check_same_fixed_effects(fits, labels)
    comparable: Sequence[Any] = fits
    order = sorted(range(len(fits)), key=lambda i: comparable[i].npar)  # sorted() is stable, as R's order()
    ml = [refit_ml(comparable[i]) if refit and isinstance(comparable[i], LmmFit) else comparable[i] for i in order]
    rows = []
    fit: Any
    for index, fit in enumerate(ml):
        row = {
            "npar": fit.npar,
            "aic": fit.aic,
            "bic": fit.bic,
            "loglik": fit.loglik,
            "deviance": fit.objective,
            "chisq": np.nan,
            "df": np.nan,
            "p_value": np.nan,
        }
        if index:
            previous = ml[index - 1]
            chisq = max(previous.objective - fit.objective, 0.0)
            df = fit.npar - previous.npar
            row.update(chisq=chisq, df=df, p_value=float(chi2_sf(chisq, df)) if df else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index([labels[i] for i in order], name="model"))


def _labels(fits: Sequence[Any], names: Sequence[str] | None) -> list[str]:
    """The row labels: the names given, else the formulas (numbered where two are equal)."""
    if names is None:
        labels = [fit.formula for fit in fits]
        if len(set(labels)) < len(labels):
            labels = [f"model {i + 1}: {label}" for i, label in enumerate(labels)]
        return labels
    if isinstance(names, str) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise ArgumentError(f"names must be a list of strings, one per model, got {names!r}.")
    if len(names) != len(fits):
        raise ArgumentError(f"names has {len(names)} entries for {len(fits)} models; give one name per model.")
    if len(set(names)) < len(names):
        raise ArgumentError(f"names must be distinct, got {list(names)!r}.")
    return list(names)


def _kind(fit: Any) -> str:
    """What the likelihood is of: a linear model, or a family with its approximation."""
    family = getattr(fit, "family", None)
    if family is None:
        return "a linear mixed model"
    scale = "Laplace" if fit.nagq <= 1 else f"{fit.nagq}-node quadrature"
    return f"a {family.name} model ({scale})"


def _check_comparable(fits: Sequence[Any], labels: Sequence[str]) -> None:
    """Refuse models whose likelihoods are not of the same data."""
    kinds = [_kind(f) for f in fits]
    if len(set(kinds)) > 1:
        raise DataError(
            f"The models are of different kinds ({', '.join(sorted(set(kinds)))}); their likelihoods are on "
            "different scales and cannot be compared. Compare models of one family and one approximation."
        )
    if len({f.nobs for f in fits}) > 1:
        raise DataError(
            "The models were fitted to different numbers of observations "
            f"({', '.join(str(f.nobs) for f in fits)}); compare models on the same rows."
        )
    first = fits[0]
    for fit, label in zip(fits[1:], labels[1:]):
        pair = f"{labels[0]!r} and {label!r}"
        response_a, response_b = _response_text(first), _response_text(fit)
        if response_a != response_b:
            raise DataError(
                f"The models {pair} have different responses ({response_a!r} and {response_b!r}); likelihoods of "
                "different responses cannot be compared."
            )
        frame_a, frame_b = first.model.model_frame, fit.model.model_frame
        if frame_a.n_input_rows != frame_b.n_input_rows or not np.array_equal(
            frame_a.dropped_rows, frame_b.dropped_rows
        ):
            raise DataError(
                f"The models {pair} were fitted to different rows of data ({frame_a.n_input_rows} rows with "
                f"{len(frame_a.dropped_rows)} dropped, against {frame_b.n_input_rows} with {len(frame_b.dropped_rows)} "
                "dropped); fit both to the same complete cases (drop the rows with missing values first)."
            )
        if not (first.model.has_rows and fit.model.has_rows):
            _check_same_streamed(first.model, fit.model, pair)
            continue
        y_a, y_b = first.model.fixed.y, fit.model.fixed.y
        if not np.array_equal(y_a, y_b):
            differ = np.flatnonzero(y_a != y_b)
            raise DataError(
                f"The models {pair} were fitted to different data of the same size: the response {response_a!r} "
                f"differs in {differ.size} of {y_a.size} observations (first: observation {int(differ[0])}, "
                f"{y_a[differ[0]]:g} against {y_b[differ[0]]:g}). Fit both models to the same data."
            )
        if not _same_weights(_prior_weights(first), _prior_weights(fit)):
            raise DataError(
                f"The models {pair} were fitted with different prior weights; their likelihoods cannot be compared."
            )


def _check_same_fixed_effects(fits: Sequence[Any], labels: Sequence[str]) -> None:
    """``refit=False`` compares the fits' own likelihoods: REML ones only for the same fixed
    effects, and never REML with ML."""
    criteria = {getattr(fit, "reml", False) for fit in fits}
    if len(criteria) > 1:
        raise DataError("refit=False compares REML fits with REML fits only; some of these models were fitted by ML.")
    if True not in criteria:
        return
    first = fits[0]
    for fit, label in zip(fits[1:], labels[1:]):
        same = first.fixef_names == fit.fixef_names and np.array_equal(first.model.fixed.X, fit.model.fixed.X)
        if not same:
            raise DataError(
                f"The models {labels[0]!r} and {label!r} have different fixed effects, so their REML likelihoods "
                "cannot be compared; use refit=True (the default), which compares them by maximum likelihood."
            )


def _check_same_streamed(first: Any, second: Any, pair: str) -> None:
    """For models of data read in chunks (no rows to compare): the same source, weights and
    Σy² (to rounding: the sums' order differs with the model's terms)."""
    models = (first, second)
    sources = [model.streamed.source.name if model.streamed is not None else "data in memory" for model in models]
    yty = [float(model.objective.cross_products.XytXy[-1, -1]) for model in models]
    same_sums = abs(yty[0] - yty[1]) <= 1e-10 * abs(yty[0])
    if sources[0] != sources[1] or first.weights_name != second.weights_name or not same_sums:
        raise DataError(
            f"The models {pair} were not fitted to the same data ({sources[0]} and {sources[1]}, weights "
            f"{first.weights_name!r} and {second.weights_name!r}, sums of squared responses {yty[0]:.10g} and "
            f"{yty[1]:.10g}); fit both models to the same data."
        )


def _prior_weights(fit: Any) -> np.ndarray | None:
    response = getattr(fit.model, "response", None)
    return response.weights if response is not None else fit.model.weights


def _same_weights(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def _response_text(fit: Any) -> str:
    """The response as written, without backticks or spaces (``np.log(Reaction)``)."""
    return fit.model.formula.response.replace("`", "").replace(" ", "")
