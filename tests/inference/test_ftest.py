"""Joint F tests against lmerTest 3.1-3's type III anova.

Reference numbers from R here (lme4 1.1-31, lmerTest 3.1-3), the data of tests/reference:
``anova(lmer(angle ~ recipe * temp + (1 | recipe:replicate), cake))`` and
``anova(lmer(score ~ Machine + (1 | Worker/Machine), machines))``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmfast

CAKE_TYPE3 = {  # F, NumDF, DenDF, Pr(>F)
    "recipe": (0.09568, 2, 254.0157694, 0.90879),
    "temp": (94.16323, 1, 222.0000048, None),
    "recipe:temp": (0.04169, 2, 222.0000048, 0.95917),
}


def test_sum_coded_term_tests_are_lmertest_type3() -> None:
    fit = lmmfast.lmm("angle ~ C(recipe, contr.sum) * temp + (1 | recipe:replicate)", lmmfast.datasets.load("cake"))
    table = fit.anova_terms()
    assert list(table.columns) == ["F", "num_df", "den_df", "p_value", "type3"]
    names = {"recipe": "C(recipe, contr.sum)", "temp": "temp", "recipe:temp": "C(recipe, contr.sum):temp"}
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
