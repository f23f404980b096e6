"""Likelihood-ratio tests, ML refits, Wald intervals, fitted values and residuals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import REFERENCE

import lmmfast


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
    with pytest.raises(lmmfast.ArgumentError, match="confint method must be"):
        fit.confint(method="bayes")
    with pytest.raises(lmmfast.ArgumentError, match="between 0 and 1"):
        fit.confint(level=95)


def test_fitted_and_residuals_add_up(sleep) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    np.testing.assert_allclose(fit.fitted() + fit.residuals(), sleep.Reaction)
    np.testing.assert_allclose(fit.residuals("pearson"), fit.residuals())
    with pytest.raises(lmmfast.ArgumentError, match="residual type"):
        fit.residuals("deviance")


def test_models_are_ordered_by_their_number_of_parameters(sleep) -> None:
    """Given larger model first, the table used to report chisq 0, df 2, p 1."""
    small = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
    big = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    forward, backward = lmmfast.anova(small, big), lmmfast.anova(big, small)
    pd.testing.assert_frame_equal(forward, backward)
    assert list(backward.index) == ["Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)"]
    assert backward.df.iloc[1] == 2 and backward.chisq.iloc[1] == pytest.approx(42.139, abs=1e-3)
    assert backward.p_value.iloc[1] < 1e-8


def test_rows_take_the_names_given_in_the_order_given(sleep) -> None:
    small = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
    big = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    table = lmmfast.anova(big, small, names=["m1", "m0"])
    assert list(table.index) == ["m0", "m1"] and table.index.name == "model"
    for names, phrase in [(["a"], "one name per model"), (["a", "a"], "distinct"), ("ab", "list of strings")]:
        with pytest.raises(lmmfast.ArgumentError, match=phrase):
            lmmfast.anova(big, small, names=names)


def test_models_of_different_responses_are_refused(sleep) -> None:
    a = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
    b = lmmfast.lmm("np.log(Reaction) ~ Days + (1 | Subject)", sleep, reml=False)
    with pytest.raises(lmmfast.DataError, match=r"different responses \('Reaction' and 'np.log\(Reaction\)'\)"):
        lmmfast.anova(a, b)


def test_models_of_different_data_of_the_same_size_are_refused(sleep) -> None:
    a = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
    shifted = sleep.assign(Reaction=sleep.Reaction.where(sleep.index != 5, sleep.Reaction + 1.0))
    b = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", shifted, reml=False)
    with pytest.raises(
        lmmfast.DataError,
        match=r"different data of the same size.*differs in 1 of 180 observations \(first: observation 5",
    ):
        lmmfast.anova(a, b)
    holes = sleep.assign(Days=sleep.Days.where(sleep.index != 0), Reaction=sleep.Reaction.where(sleep.index != 1))
    c = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", holes.assign(Reaction=holes.Reaction.fillna(250.0)), reml=False)
    d = lmmfast.lmm("Reaction ~ 1 + (1 | Subject)", holes, reml=False)
    with pytest.raises(lmmfast.DataError, match="different rows of data"):
        lmmfast.anova(c, d)
    weighted = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False, weights=np.linspace(1, 2, 180))
    with pytest.raises(lmmfast.DataError, match="different prior weights"):
        lmmfast.anova(a, weighted)
