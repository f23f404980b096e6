"""Package-wide defaults that a user sets once per session, for the calls that do not give
them: at present the contrast coding of categorical predictors (afex users set sum coding
for everything). Every call's own argument takes precedence.

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

from lmmfast.validation import check_choice

#: The codings a factor can take (:mod:`lmmfast.formula.contrasts` has their definitions).
CONTRAST_CODINGS = ("treatment", "sum", "helmert", "sdif", "poly")

_OPTIONS: dict[str, Any] = {"contrasts": "treatment"}


def get_options() -> dict[str, Any]:
    """The current package-wide defaults (a copy)."""
    return dict(_OPTIONS)


def set_options(*, contrasts: str | None = None) -> dict[str, Any]:
    """Set package-wide defaults; returns the previous ones, to restore them with
    ``set_options(**previous)``.

    Parameters
    ----------
    contrasts : {"treatment", "sum", "helmert", "sdif", "poly"}, optional
        The coding of every categorical predictor a call's ``contrasts=`` does not name
        (default ``"treatment"``, as R's).
    """
    previous = get_options()
    if contrasts is not None:
        _OPTIONS["contrasts"] = check_choice("contrasts", contrasts, CONTRAST_CODINGS)
    return previous
