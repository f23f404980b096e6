"""Likelihood-ratio tests, ML refits, Wald intervals, fitted values and residuals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import REFERENCE

import lmmfast


@pytest.fixture(scope="module")
def sleep():
    return lmmfast.datasets.load("sleepstudy")


def test_lrt_matches_lme4(sleep) -> None:
    ref = json.loads((REFERENCE / "fits" / "sleepstudy_lrt.json").read_text())
    small = lmmfast.lmm(ref["small"], sleep, reml=False)
    big = lmmfast.lmm(ref["big"], sleep, reml=False)
    table = lmmfast.anova(small, big)
    assert list(table.columns) == ["npar", "aic", "bic", "loglik", "deviance", "chisq", "df", "p_value"]
    np.testing.assert_allclose(table.aic, ref["AIC"], rtol=1e-8)
    np.testing.assert_allclose(table.bic, ref["BIC"], rtol=1e-8)
    np.testing.assert_allclose(table.loglik, ref["logLik"], rtol=1e-8)
    assert table.chisq.iloc[1] == pytest.approx(ref["chisq"], rel=1e-6)
    assert table.df.iloc[1] == ref["df"]
    assert table.p_value.iloc[1] == pytest.approx(ref["p"], rel=1e-5)
    assert np.isnan(table.chisq.iloc[0])
    assert list(table.index) == [ref["small"], ref["big"]]


def test_reml_fits_are_refitted_by_ml(sleep) -> None:
    ref = json.loads((REFERENCE / "fits" / "sleepstudy_lrt.json").read_text())
    reml = [lmmfast.lmm(ref["small"], sleep), lmmfast.lmm(ref["big"], sleep)]
    table = lmmfast.anova(*reml)
    assert table.chisq.iloc[1] == pytest.approx(ref["chisq"], rel=1e-6)
    ml = reml[1].refit_ml()
    assert not ml.reml and ml.objective == pytest.approx(1751.93934448899, rel=1e-9)
    assert ml.refit_ml() is ml


def test_anova_rejects_fits_of_different_data(sleep) -> None:
    a = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep)
    b = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep.iloc[:170])
    with pytest.raises(lmmfast.DataError, match="different numbers of observations"):
        lmmfast.anova(a, b)
    with pytest.raises(lmmfast.ArgumentError, match="two or more fitted models"):
        lmmfast.anova(a)


def test_wald_intervals(sleep) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    ci = fit.confint()
    assert list(ci.columns) == ["lower", "upper"] and list(ci.index) == ["Intercept", "Days"]
    assert ci.loc["Days", "lower"] == pytest.approx(fit.fixef["Days"] - 1.959963984540054 * fit.stderr["Days"])
    with pytest.raises(lmmfast.DataError, match="confint method must be"):
        fit.confint(method="bayes")
    with pytest.raises(lmmfast.DataError, match="between 0 and 1"):
        fit.confint(level=95)


def test_fitted_and_residuals_add_up(sleep) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    np.testing.assert_allclose(fit.fitted() + fit.residuals(), sleep.Reaction)
    np.testing.assert_allclose(fit.residuals("pearson"), fit.residuals())
    with pytest.raises(lmmfast.DataError, match="residual type"):
        fit.residuals("deviance")
