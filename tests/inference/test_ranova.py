"""lmerTest's ranova and lme4's anova(refit = FALSE), against tests/reference/analysis/ranova.json."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import ANALYSIS, KB07_SUM, reference_data

import lmmfast

FOLDER = ANALYSIS
REFERENCE = json.loads((FOLDER / "ranova.json").read_text())
CASES = {case["id"]: case for case in REFERENCE["ranova"]}


@pytest.mark.parametrize("case_id", list(CASES))
def test_ranova_is_lmertests(case_id):
    case = CASES[case_id]
    codings = KB07_SUM if case.get("contrasts") == "sum" else None
    fit = lmmfast.lmm(case["formula"], reference_data(case["data"]), contrasts=codings)
    table, reference = fit.ranova(), case["table"]
    assert list(table.index) == reference["rows"]
    assert list(table.npar) == reference["npar"]
    np.testing.assert_allclose(table.loglik, reference["logLik"], rtol=1e-6)
    np.testing.assert_allclose(table.aic, reference["AIC"], rtol=1e-6)
    np.testing.assert_allclose(table.lrt.iloc[1:], reference["LRT"][1:], rtol=1e-4)
    assert list(table.df.iloc[1:]) == reference["df"][1:]
    np.testing.assert_allclose(table.p_value.iloc[1:], reference["p"][1:], atol=1e-4)


def test_anova_without_refit_compares_the_reml_likelihoods():
    case = REFERENCE["reml_lrt"]
    sleep = lmmfast.datasets.load("sleepstudy")
    small, big = lmmfast.lmm(case["small"], sleep), lmmfast.lmm(case["big"], sleep)
    table = lmmfast.anova(small, big, refit=False)
    assert table.chisq.iloc[1] == pytest.approx(case["chisq"], rel=1e-5)
    assert table.df.iloc[1] == case["df"] and table.p_value.iloc[1] == pytest.approx(case["p"], abs=1e-6)
    np.testing.assert_allclose(table.loglik, case["logLik"], rtol=1e-7)
    refitted = lmmfast.anova(small, big)
    assert refitted.chisq.iloc[1] != pytest.approx(case["chisq"], rel=1e-3)


def test_anova_without_refit_refuses_different_fixed_effects():
    sleep = lmmfast.datasets.load("sleepstudy")
    with pytest.raises(lmmfast.DataError, match=re.escape("have different fixed effects, so their REML likelihoods")):
        lmmfast.anova(
            lmmfast.lmm("Reaction ~ 1 + (1 | Subject)", sleep),
            lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep),
            refit=False,
        )


def test_ranova_cannot_remove_the_only_random_term():
    fit = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", lmmfast.datasets.load("sleepstudy"))
    with pytest.raises(lmmfast.ModelError, match=re.escape("cannot remove (1 | Subject), the model's only")):
        fit.ranova()
