"""The result object: contract names, varcorr layout, ranef, summary and JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from helpers import REFERENCE

import lmmfast


@pytest.fixture(scope="module")
def fit() -> lmmfast.LmmResult:
    return lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))


def test_result_is_frozen(fit) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.sigma = 1.0  # type: ignore[misc]


def test_contract_attributes(fit) -> None:
    assert list(fit.fixef.index) == ["Intercept", "Days"]
    assert list(fit.stderr.index) == ["Intercept", "Days"]
    assert fit.loglik == pytest.approx(-fit.objective / 2)
    assert fit.aic == pytest.approx(fit.objective + 2 * 6)
    assert fit.bic == pytest.approx(fit.objective + np.log(180) * 6)
    assert fit.nobs == 180 and fit.converged and not fit.singular
    assert fit.theta.shape == (3,)
    assert fit.optsummary.n_evals == fit.n_evals > 0
    assert fit.optsummary.initial.tolist() == fit.optsummary.trace_theta[0].tolist()


def test_varcorr_layout(fit) -> None:
    vc = fit.varcorr
    assert vc.columns.tolist() == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert vc.grp.tolist() == ["Subject", "Subject", "Subject", "Residual"]
    assert vc.var2.tolist() == [None, None, "Days", None]
    assert vc.vcov.iloc[2] == pytest.approx(vc.sdcor.iloc[2] * vc.sdcor.iloc[0] * vc.sdcor.iloc[1])
    assert vc.sdcor.iloc[3] == fit.sigma


def test_ranef_merges_independent_terms_of_one_factor() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days || Subject)", lmmfast.datasets.load("sleepstudy"))
    ranef = fit.ranef
    assert list(ranef) == ["Subject"]
    assert ranef["Subject"].columns.tolist() == ["(Intercept)", "Days"]
    assert ranef["Subject"].index[0] == "308"
    assert ranef["Subject"].shape == (18, 2)


def test_to_dict_is_json_and_has_the_contract_keys(fit) -> None:
    payload = json.loads(json.dumps(fit.to_dict()))
    for key in [
        "formula",
        "criterion",
        "nobs",
        "ngrps",
        "objective",
        "loglik",
        "aic",
        "bic",
        "fixef",
        "stderr",
        "sigma",
        "theta",
        "varcorr",
        "converged",
        "singular",
        "n_evals",
        "fit_seconds",
        "version",
    ]:
        assert key in payload
    assert payload["criterion"] == "REML"
    assert payload["ngrps"] == {"Subject": 18}
    assert payload["varcorr"][2] == {
        "grp": "Subject",
        "var1": "(Intercept)",
        "var2": "Days",
        "vcov": pytest.approx(fit.varcorr.vcov.iloc[2]),
        "sdcor": pytest.approx(fit.varcorr.sdcor.iloc[2]),
    }


def test_repr_is_short_and_str_is_the_summary(fit) -> None:
    """Typing ``fit`` in a REPL printed 11,775 characters (the optimiser's trace, every fitted value)."""
    text = repr(fit)
    assert text.splitlines() == [
        "<LmmResult: Reaction ~ Days + (Days | Subject)",
        " REML criterion 1743.628, 180 observations, groups: Subject (18)>",
    ]
    assert str(fit) == fit.summary()
    singular = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff2"), checks={"singular": "ignore"})
    assert repr(singular).endswith("groups: Batch (6), boundary (singular) fit>")


def test_coef_is_fixed_plus_random_per_level_as_lme4() -> None:
    """lme4's ``coef()``, built from lme4's own fixef and ranef of the reference fit."""
    ref = json.loads((REFERENCE / "fits" / "sleepstudy_slopes_reml.json").read_text())
    fit = lmmfast.lmm(ref["formula"], lmmfast.datasets.load("sleepstudy"))
    coef = fit.coef
    assert list(coef) == ["Subject"]
    table = coef["Subject"]
    assert list(table.columns) == ["Intercept", "Days"] and table.index.name == "Subject"
    intercept, slope = ref["fixef"]["estimate"]
    for row in ref["ranef"]["Subject"]:
        level = row["level"]
        assert table.loc[level, "Intercept"] == pytest.approx(intercept + row["(Intercept)"], rel=1e-4)
        assert table.loc[level, "Days"] == pytest.approx(slope + row["Days"], rel=1e-4)


def test_coef_puts_random_only_columns_first_with_a_fixed_part_of_zero() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    fit = lmmfast.lmm("Reaction ~ 1 + (Days || Subject)", data)
    table = fit.coef["Subject"]
    assert list(table.columns) == ["Days", "Intercept"]
    np.testing.assert_allclose(table["Days"], fit.ranef["Subject"]["Days"])
    np.testing.assert_allclose(table["Intercept"], fit.fixef["Intercept"] + fit.ranef["Subject"]["(Intercept)"])
