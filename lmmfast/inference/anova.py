"""Likelihood-ratio comparison of nested models (lme4's ``anova(m0, m1)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from lmmfast.errors import DataError

if TYPE_CHECKING:
    from lmmfast.result import LmmResult


def anova(*fits: LmmResult) -> pd.DataFrame:
    """Compare models by likelihood-ratio tests; REML fits are refitted by ML first, as lme4 does.

    Parameters
    ----------
    *fits : LmmResult
        Two or more fits to the same observations, usually nested, in the order to report.

    Returns
    -------
    pandas.DataFrame
        One row per model, in order: ``npar, aic, bic, loglik, deviance, chisq, df, p_value``
        (the test columns compare each model with the one above it).

    Examples
    --------
    >>> import lmmfast
    >>> data = lmmfast.datasets.load("sleepstudy")
    >>> small = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", data, reml=False)
    >>> big = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data, reml=False)
    >>> round(float(anova(small, big).loc[1, "chisq"]), 3)
    42.139
    """
    from lmmfast.result import LmmResult

    if len(fits) < 2 or not all(isinstance(f, LmmResult) for f in fits):
        raise DataError("anova needs two or more fitted models (results of lmmfast.lmm).")
    if len({f.nobs for f in fits}) > 1:
        raise DataError(
            "The models were fitted to different numbers of observations "
            f"({', '.join(str(f.nobs) for f in fits)}); compare models on the same rows."
        )
    ml = [f.refit_ml() if f.reml else f for f in fits]
    rows = []
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
            df = abs(fit.npar - previous.npar)
            row.update(chisq=chisq, df=df, p_value=float(stats.chi2.sf(chisq, df)) if df else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)
