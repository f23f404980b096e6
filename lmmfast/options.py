"""Package-wide defaults that a user sets once per session, for the calls that do not give
them: the contrast coding of categorical predictors (afex users set sum coding for
everything), and how many recently prepared models :func:`lmmfast.lmm` and
:func:`lmmfast.glmm` keep for repeated calls on the same data (:mod:`lmmfast.recent`).
Every call's own argument takes precedence.

Examples
--------
>>> import lmmfast
>>> previous = lmmfast.set_options(contrasts="sum")
>>> lmmfast.get_options()["contrasts"]
'sum'
>>> _ = lmmfast.set_options(**previous)
"""

from __future__ import annotations

from typing import Any

from lmmfast.recent import DEFAULT_SIZE, RECENT_MODELS
from lmmfast.validation import check_choice, check_count

#: The codings a factor can take (:mod:`lmmfast.formula.contrasts` has their definitions).
CONTRAST_CODINGS = ("treatment", "sum", "helmert", "sdif", "poly")

_OPTIONS: dict[str, Any] = {"contrasts": "treatment", "model_cache": DEFAULT_SIZE}


def get_options() -> dict[str, Any]:
    """The current package-wide defaults (a copy)."""
    return dict(_OPTIONS)


def set_options(*, contrasts: str | None = None, model_cache: int | None = None) -> dict[str, Any]:
    """Set package-wide defaults; returns the previous ones, to restore them with
    ``set_options(**previous)``.

    Parameters
    ----------
    contrasts : {"treatment", "sum", "helmert", "sdif", "poly"}, optional
        The coding of every categorical predictor a call's ``contrasts=`` does not name
        (default ``"treatment"``, as R's).
    model_cache : int, optional
        How many prepared models :func:`lmmfast.lmm` and :func:`lmmfast.glmm` keep (default
        8): a call with the formula, settings and column values of a recent call, on data of
        at most 10,000 rows in a pandas or polars DataFrame or a pyarrow Table, fits the
        model that call prepared instead
        of preparing it again — the same fit, several times sooner on small data. 0 turns
        this off and empties the store. For many fits of one model on data that change, see
        :class:`lmmfast.LinearMixedModel`.
    """
    previous = get_options()
    if contrasts is not None:
        _OPTIONS["contrasts"] = check_choice("contrasts", contrasts, CONTRAST_CODINGS)
    if model_cache is not None:
        _OPTIONS["model_cache"] = check_count("model_cache", model_cache, minimum=0)
        RECENT_MODELS.resize(_OPTIONS["model_cache"])
    return previous
