"""Kenward–Roger against pbkrtest 0.5.2 (through lmerTest 3.1-3): coefficient tables of five
models (``tests/reference/analysis/ftests.json``), and the properties the adjustment must have."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import ANALYSIS, KB07_SUM, at_theta, reference_data, reference_fit

import lmmfast
from lmmfast.inference import kenward_roger as kr_module

TABLES = json.loads((ANALYSIS / "ftests.json").read_text())["kenward_roger"]


def fitted(case: dict) -> lmmfast.LmmResult:
    contrasts = KB07_SUM if case["data"] == "kb07_factors.csv" else None
    data = reference_data(case["data"])
    return lmmfast.lmm(case["formula"], data, contrasts=contrasts, checks={"singular": "ignore"})


@pytest.mark.parametrize("case", TABLES, ids=[c["id"] for c in TABLES])
def test_coefficient_tables_match_pbkrtest(case) -> None:
    """At our optimum: its θ̂ differs from lme4's in the 6th digit (sleepstudy's most, moving
    the standard errors by 7e-6), so the standard errors are compared to 1e-5."""
    table = fitted(case).fixef_table("kenward-roger")
    expected = case["fixef"]
    assert len(table) == len(expected["names"])  # R's names differ (spkr1 for spkr[S.new]); the order is R's
    np.testing.assert_allclose(table.estimate, expected["estimate"], rtol=1e-5)
    np.testing.assert_allclose(table.std_error, expected["se"], rtol=1e-5)
    np.testing.assert_allclose(table.df, expected["df"], rtol=1e-3)
    np.testing.assert_allclose(table.t_value, expected["t"], rtol=1e-5)
    np.testing.assert_allclose(table.p_value, expected["p"], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("table_id", "fit_id", "dataset"),
    [("sleepstudy_kr", "sleepstudy_slopes_reml", "sleepstudy"), ("dragons_nested_kr", "dragons_nested", "dragons")],
)
def test_at_lme4s_theta_the_tables_agree_to_rounding(table_id, fit_id, dataset) -> None:
    case = next(c for c in TABLES if c["id"] == table_id)
    data = lmmfast.datasets.load(dataset)
    fit = at_theta(lmmfast.lmm(case["formula"], data), data, reference_fit(fit_id)["theta"])
    table = fit.fixef_table("kenward-roger")
    np.testing.assert_allclose(table.std_error, case["fixef"]["se"], rtol=1e-9)
    np.testing.assert_allclose(table.df, case["fixef"]["df"], rtol=1e-6)


def test_the_adjustment_only_grows_the_covariance_and_keeps_the_estimates(sleep) -> None:
    # unbalanced (every seventh row dropped): in the balanced design the adjustment is zero
    unbalanced = sleep.iloc[[i for i in range(len(sleep)) if i % 7 != 3]]
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", unbalanced)
    adjusted = fit.kenward_roger.adjusted
    assert np.all(np.linalg.eigvalsh(adjusted - fit.beta_covariance) > 1e-6 * np.abs(fit.beta_covariance).max())
    assert np.array_equal(fit.fixef_table("kenward-roger").estimate, fit.beta)


def test_the_adjustment_vanishes_in_a_balanced_design(sleep) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    np.testing.assert_allclose(fit.kenward_roger.adjusted, fit.beta_covariance, rtol=1e-10)


def test_constant_weights_change_nothing(sleep) -> None:
    """Weights c on every row: the same model with σ² scaled by c, so the same inference."""
    plain = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep).fixef_table("kenward-roger")
    weighted = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep, weights=np.full(len(sleep), 4.0))
    table = weighted.fixef_table("kenward-roger")
    np.testing.assert_allclose(table.std_error, plain.std_error, rtol=1e-5)
    np.testing.assert_allclose(table.df, plain.df, rtol=1e-5)


def test_one_row_f_test_is_the_squared_t_test(sleep) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    row = fit.fixef_table("kenward-roger").loc["Days"]
    result = fit.test_contrasts([[0.0, 1.0]], ddf="kenward-roger")
    assert result["den_df"] == pytest.approx(row.df, rel=1e-12)
    assert result["num_df"] == 1.0
    # pbkrtest scales the F of one row too; here the scale is 1 to rounding
    assert result["F"] == pytest.approx(row.t_value**2, rel=1e-6)


def test_the_summary_says_which_method(sleep) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    text = fit.summary(ddf="kenward-roger")
    assert "(standard errors, df and p-values by Kenward and Roger's method)" in text
    assert "Days           10.47      1.546 17.00   6.771 3.26e-06" in text
    assert list(fit.fixef_table("none").columns) == ["estimate", "std_error", "t_value"]


def test_ml_fits_and_large_designs_are_refused_with_the_reason(sleep, monkeypatch) -> None:
    ml = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    with pytest.raises(lmmfast.ArgumentError, match=r"defined for REML fits.*reml=True"):
        ml.fixef_table("kenward-roger")
    monkeypatch.setattr(kr_module, "DENSE_MATRICES", 10**12)
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(lmmfast.MemoryBudgetError, match="use ddf='satterthwaite'"):
        fit.fixef_table("kenward-roger")
    with pytest.raises(lmmfast.ArgumentError, match="ddf must be"):
        fit.fixef_table("containment")
