"""Joint F tests against lmerTest 3.1-3's anova: types I, II and III with Satterthwaite's and
Kenward–Roger's df (``tests/reference/analysis/ftests.json``), and type III on cake's numeric
temperature and on machines (numbers from R here: lme4 1.1-31, lmerTest 3.1-3).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import ANALYSIS, KB07_SUM, at_theta, reference_data

import lmmfast

FTESTS = json.loads((ANALYSIS / "ftests.json").read_text())["f_tests"]


@pytest.fixture(scope="module")
def kb07_at_lme4() -> lmmfast.LmmResult:
    """kb07 under sum coding at lme4's θ̂: our optimum's θ differs from lme4's in the 6th digit,
    which moves the F values by 2e-6; at lme4's θ they agree to 1e-13."""
    data = reference_data("kb07_factors.csv")
    formula = "RTtrunc ~ spkr * prec * load + (1 | subj) + (1 + prec | item)"
    fit = lmmfast.lmm(formula, data, contrasts=KB07_SUM)
    theta = json.loads((ANALYSIS / "contrasts.json").read_text())["cases"][0]["theta"]
    return at_theta(fit, data, theta, contrasts=KB07_SUM)


@pytest.fixture(scope="module")
def cake_fit() -> lmmfast.LmmResult:
    return lmmfast.lmm("angle ~ recipe * temperature + (1 | recipe:replicate)", reference_data("cake.csv"))


@pytest.mark.parametrize("case", FTESTS, ids=[c["id"] for c in FTESTS])
def test_anova_tables_of_every_type_and_df_match_lmertest(case, kb07_at_lme4, cake_fit) -> None:
    fit = kb07_at_lme4 if case["data"] == "kb07_factors.csv" else cake_fit
    table = fit.anova_terms(type=case["type"], ddf=case["ddf"].lower())
    expected = case["table"]
    assert list(table.index) == expected["terms"]
    assert table.num_df.tolist() == expected["num_df"]
    np.testing.assert_allclose(table.F, expected["F"], rtol=1e-6)
    np.testing.assert_allclose(table.sum_sq, expected["sum_sq"], rtol=1e-6)
    np.testing.assert_allclose(table.mean_sq, expected["mean_sq"], rtol=1e-6)
    np.testing.assert_allclose(table.den_df, expected["den_df"], rtol=1e-3)
    np.testing.assert_allclose(table.p_value, expected["p"], atol=1e-4, rtol=0)


def test_types_differ_where_they_should(kb07_at_lme4) -> None:
    """Type I tests spkr first, unadjusted for later terms; type II adjusts it for prec and load
    but not for its interactions; the highest-order term is the same under all three."""
    tables = {t: kb07_at_lme4.anova_terms(type=t) for t in (1, 2, 3)}
    assert len({round(tables[t].loc["spkr", "F"], 6) for t in (1, 2, 3)}) == 3
    assert len({round(tables[t].loc["spkr:prec:load", "F"], 9) for t in (1, 2, 3)}) == 1


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"type": 4}, "type must be 1, 2 or 3"),
        ({"type": True}, "type must be 1, 2 or 3"),
        ({"ddf": "containment"}, "ddf must be 'satterthwaite' or 'kenward-roger'"),
    ],
)
def test_bad_test_options_are_refused(cake_fit, options, phrase) -> None:
    with pytest.raises(lmmfast.ArgumentError, match=phrase):
        cake_fit.anova_terms(**options)


CAKE_TYPE3 = {  # F, NumDF, DenDF, Pr(>F)
    "recipe": (0.09568, 2, 254.0157694, 0.90879),
    "temp": (94.16323, 1, 222.0000048, None),
    "recipe:temp": (0.04169, 2, 222.0000048, 0.95917),
}


def test_sum_coded_term_tests_are_lmertest_type3() -> None:
    fit = lmmfast.lmm("angle ~ C(recipe, contr.sum) * temp + (1 | recipe:replicate)", lmmfast.datasets.load("cake"))
    table = fit.anova_terms()
    assert list(table.columns) == ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p_value", "type3"]
    names = {"recipe": "recipe", "temp": "temp", "recipe:temp": "recipe:temp"}
    for key, (F, num, den, p) in CAKE_TYPE3.items():
        row = table.loc[names[key]]
        assert pytest.approx(F, rel=1e-4) == row.F
        assert row.num_df == num
        assert row.den_df == pytest.approx(den, rel=1e-6)
        if p is not None:
            assert row.p_value == pytest.approx(p, abs=1e-5)
    assert table.type3.all()


def test_treatment_coded_fit_gets_the_same_type3_tests() -> None:
    data = lmmfast.datasets.load("cake")
    table = lmmfast.lmm("angle ~ recipe * temp + (1 | recipe:replicate)", data).anova_terms()
    assert list(table.index) == ["recipe", "temp", "recipe:temp"]
    for key, (F, num, den, _) in CAKE_TYPE3.items():
        assert table.loc[key, "F"] == pytest.approx(F, rel=1e-4)
        assert table.loc[key, "num_df"] == num
        assert table.loc[key, "den_df"] == pytest.approx(den, rel=1e-6)
    assert table.type3.all()


def test_machine_effect_matches_lmertest() -> None:
    fit = lmmfast.lmm("score ~ Machine + (1 | Worker/Machine)", lmmfast.datasets.load("machines"))
    row = fit.anova_terms().loc["Machine"]
    assert pytest.approx(20.57608, rel=1e-5) == row.F
    # the df moves by a few 1e-5 with θ̂ inside the optimiser's tolerance (the last bits of the
    # factorisation move BOBYQA's last steps): 10.00005 and 9.99964 were both seen
    assert row.den_df == pytest.approx(9.999999937, rel=1e-4)
    assert row.p_value == pytest.approx(0.00028555, rel=1e-3)


def test_one_row_contrast_is_the_squared_t_test() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    result = fit.test_contrasts(pd.DataFrame({"Days": [1.0]}))
    row = fit.coef_table.loc["Days"]
    assert result["F"] == pytest.approx(row.t_value**2)
    assert result["den_df"] == pytest.approx(row.df)
    assert result["p_value"] == pytest.approx(row.p_value)


@pytest.mark.parametrize(
    ("contrasts", "phrase"),
    [
        (pd.DataFrame({"Nights": [1.0]}), "not fixed effects"),
        (np.ones((1, 3)), "2 columns"),
        (np.zeros((1, 2)), "zero variance"),
        ("Days", "numeric matrix"),
    ],
)
def test_bad_contrasts(contrasts, phrase) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    with pytest.raises(lmmfast.DataError, match=phrase):
        fit.test_contrasts(contrasts)
