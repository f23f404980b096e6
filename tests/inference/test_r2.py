"""Nakagawa's R² and the ICC against performance's r2_nakagawa and icc
(tests/reference/analysis/r2_icc.json, glmm_followup.json)."""

from __future__ import annotations

import json

import pytest
from helpers import ANALYSIS, KB07_SUM, reference_data

import lmmfast

FOLDER = ANALYSIS
CASES = {case["id"]: case for case in json.loads((FOLDER / "r2_icc.json").read_text())["cases"]}
CODINGS = {"kb07_sum": KB07_SUM}


@pytest.mark.parametrize("case_id", list(CASES))
def test_r2_and_icc_are_performances(case_id):
    case = CASES[case_id]
    fit = lmmfast.lmm(case["formula"], reference_data(case["data"]), contrasts=CODINGS.get(case_id))
    r2, icc = fit.r2(), fit.icc()
    assert r2["marginal"] == pytest.approx(case["r2_marginal"], abs=1e-4)
    assert r2["conditional"] == pytest.approx(case["r2_conditional"], abs=1e-4)
    assert icc["adjusted"] == pytest.approx(case["icc_adjusted"], abs=1e-4)
    assert icc["unadjusted"] == pytest.approx(case["icc_unadjusted"], abs=1e-4)


def test_a_binomial_models_r2_uses_the_logit_distributions_variance():
    reference = json.loads((FOLDER / "glmm_followup.json").read_text())
    fit = lmmfast.glmm(reference["formula"], lmmfast.datasets.load("verbagg"))
    r2, icc = fit.r2(), fit.icc()
    assert r2["marginal"] == pytest.approx(reference["r2_marginal"], abs=1e-4)
    assert r2["conditional"] == pytest.approx(reference["r2_conditional"], abs=1e-4)
    assert icc["adjusted"] == pytest.approx(reference["icc_adjusted"], abs=1e-4)
    assert icc["unadjusted"] == pytest.approx(reference["icc_unadjusted"], abs=1e-4)


def test_poisson_r2_is_refused_with_the_reason():
    fit = lmmfast.glmm("incidence ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), family="poisson")
    with pytest.raises(lmmfast.ArgumentError, match="need the distribution's variance from a null model"):
        fit.r2()
