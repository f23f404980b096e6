"""Estimated marginal means and their contrasts against emmeans 1.8.4 (Satterthwaite and
Kenward–Roger df; Tukey, Holm, dunnettx and no adjustment): ``reference/analysis/emmeans.json``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import ANALYSIS, KB07_SUM, at_theta, reference_data

import lmmfast

CASES = json.loads((ANALYSIS / "emmeans.json").read_text())["cases"]


@pytest.fixture(scope="module")
def fits() -> dict[str, lmmfast.LmmResult]:
    """One fit per model of the cases; kb07 at lme4's θ̂ (ours differs in the 6th digit, which
    moves its standard errors by 2e-6)."""
    out = {}
    for case in CASES:
        if case["formula"] in out:
            continue
        data = reference_data(case["data"])
        if case["data"] == "kb07_factors.csv":
            fit = lmmfast.lmm(case["formula"], data, contrasts=KB07_SUM)
            theta = json.loads((ANALYSIS / "contrasts.json").read_text())["cases"][0]["theta"]
            out[case["formula"]] = at_theta(fit, data, theta, contrasts=KB07_SUM)
        else:
            out[case["formula"]] = lmmfast.lmm(case["formula"], data)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_means_and_contrasts_match_emmeans(case, fits) -> None:
    method, specs = (part.strip() for part in case["specs"].split("~"))
    means = fits[case["formula"]].emmeans(specs, ddf=case["df"])
    expected = pd.DataFrame(case["emmeans"])
    table = means.table
    for column in [*means.specs, *means.by]:
        assert table[column].astype(str).tolist() == expected[column].astype(str).tolist()
    np.testing.assert_allclose(table.emmean, expected.emmean, rtol=1e-6)
    np.testing.assert_allclose(table.std_error, expected.SE, rtol=1e-6)
    np.testing.assert_allclose(table.df, expected.df, rtol=1e-3)
    np.testing.assert_allclose(table[["lower", "upper"]], expected[["lower.CL", "upper.CL"]], rtol=1e-6)

    contrasts = means.contrasts(method, adjust=case["adjust"])
    expected = pd.DataFrame(case["contrasts"])
    assert contrasts.contrast.tolist() == expected.contrast.tolist()
    for column in means.by:
        assert contrasts[column].astype(str).tolist() == expected[column].astype(str).tolist()
    np.testing.assert_allclose(contrasts.estimate, expected.estimate, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(contrasts.std_error, expected.SE, rtol=1e-6)
    np.testing.assert_allclose(contrasts.df, expected.df, rtol=1e-3)
    np.testing.assert_allclose(contrasts.t_ratio, expected["t.ratio"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(contrasts.p_value, expected["p.value"], atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def machines() -> lmmfast.LmmResult:
    return lmmfast.lmm("score ~ Machine + (1 | Worker/Machine)", lmmfast.datasets.load("machines"))


def test_a_contrast_matrix_and_the_adjustments_agree_with_their_definitions(machines) -> None:
    means = machines.emmeans("Machine")
    pairwise = means.contrasts("pairwise", adjust="none")
    custom = means.contrasts(pd.DataFrame([[1.0, -1.0, 0.0]], index=["A vs B"]), adjust="none")
    assert custom.contrast.tolist() == ["A vs B"]
    assert custom.estimate[0] == pytest.approx(pairwise.estimate[0], rel=1e-12)
    assert custom.p_value[0] == pytest.approx(pairwise.p_value[0], rel=1e-12)
    raw = pairwise.p_value.to_numpy()
    np.testing.assert_allclose(means.contrasts(adjust="bonferroni").p_value, np.minimum(1, 3 * raw))
    np.testing.assert_allclose(means.contrasts(adjust="sidak").p_value, 1 - (1 - raw) ** 3)
    holm = means.contrasts(adjust="holm").p_value.to_numpy()
    order = np.argsort(raw)
    np.testing.assert_allclose(holm[order], np.maximum.accumulate(np.minimum(1, raw[order] * [3, 2, 1])))
    assert means.contrasts("revpairwise").contrast.tolist() == ["B - A", "C - A", "C - B"]
    assert means.contrasts("consec").contrast.tolist() == ["B - A", "C - B"]


def test_numeric_predictors_sit_at_their_means(sleep) -> None:
    data = sleep.assign(late=np.where(sleep.Days >= 5, "late", "early"))
    fit = lmmfast.lmm("Reaction ~ late + Days + (1 | Subject)", data)
    table = fit.emmeans("late").table
    at_mean_days = fit.fixef["Intercept"] + fit.fixef["Days"] * data.Days.mean()
    expected = [at_mean_days, at_mean_days + fit.fixef["late[T.late]"]]
    np.testing.assert_allclose(table.emmean, expected, rtol=1e-12)


def test_a_loaded_fit_gives_the_same_means(machines, tmp_path) -> None:
    machines.coef_table  # noqa: B018 - computed, so the file holds the df's derivatives
    machines.save(tmp_path / "machines.lmmfast")
    loaded = lmmfast.load(tmp_path / "machines.lmmfast")
    pd.testing.assert_frame_equal(loaded.emmeans("Machine").table, machines.emmeans("Machine").table)


@pytest.mark.parametrize(
    ("call", "phrase"),
    [
        (lambda f: f.emmeans("Worker"), r"'Worker' is not a factor of the fixed part \(its factors: Machine\)"),
        (lambda f: f.emmeans(""), "specs must name at least one factor"),
        (lambda f: f.emmeans("Machine", by="Machine"), "cannot be both in specs and in by"),
        (lambda f: f.emmeans("Machine | Machine", by="Machine"), "either after '|' in specs or as by="),
        (lambda f: f.emmeans("Machine", ddf="asymptotic"), "ddf must be"),
        (lambda f: f.emmeans("Machine", level=1.5), "level"),
        (lambda f: f.emmeans("Machine").contrasts("dunnett"), "method must be"),
        (lambda f: f.emmeans("Machine").contrasts(adjust="scheffe"), "adjust must be"),
        (lambda f: f.emmeans("Machine").contrasts("trt.vs.ctrl", adjust="tukey"), "adjust='tukey' is for pairwise"),
        (lambda f: f.emmeans("Machine").contrasts([[1.0, -1.0]]), r"one column per mean of a group \(3\)"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(machines, call, phrase) -> None:
    with pytest.raises(lmmfast.ArgumentError, match=phrase):
        call(machines)


# --- generalized fits --------------------------------------------------------------------------

FOLLOWUP = json.loads((ANALYSIS / "glmm_followup.json").read_text())


@pytest.fixture(scope="module")
def verbagg() -> lmmfast.GlmmResult:
    return lmmfast.glmm(FOLLOWUP["formula"], lmmfast.datasets.load("verbagg"), family="binomial")


@pytest.mark.parametrize("scale", ["link", "response"])
def test_generalized_means_match_emmeans_within_the_fits_agreement(verbagg, scale) -> None:
    """Against emmeans on glmer's fit, which agrees with ours to 2e-4 in β and 2e-3 in the
    standard errors (tests/generalized/test_reference.py): the same tolerances here."""
    means = verbagg.emmeans("btype", type=scale)
    expected = pd.DataFrame(FOLLOWUP[f"emmeans_{scale}"])
    column = "emmean" if scale == "link" else "prob"
    np.testing.assert_allclose(means.table[column], expected[column], rtol=1e-3)
    np.testing.assert_allclose(means.table.std_error, expected.SE, rtol=5e-3)
    np.testing.assert_allclose(means.table[["lower", "upper"]], expected[["asymp.LCL", "asymp.UCL"]], rtol=5e-3)
    assert np.isinf(means.table.df).all()
    contrasts = means.contrasts("pairwise")  # Tukey, asymptotic
    expected = pd.DataFrame(FOLLOWUP[f"contrasts_{scale}"])
    assert contrasts.contrast.tolist() == expected.contrast.tolist()
    estimate = "estimate" if scale == "link" else "odds_ratio"
    np.testing.assert_allclose(contrasts[estimate], expected[estimate.replace("_", ".")], rtol=1e-3)
    np.testing.assert_allclose(contrasts.std_error, expected.SE, rtol=5e-3)
    np.testing.assert_allclose(contrasts.z_ratio, expected["z.ratio"], rtol=5e-3)
    np.testing.assert_allclose(contrasts.p_value, expected["p.value"], atol=1e-4, rtol=0)


def test_response_scale_means_are_the_link_scale_ones_back_transformed(verbagg) -> None:
    link, response = verbagg.emmeans("btype"), verbagg.emmeans("btype", type="response")
    probability = 1 / (1 + np.exp(-link.table.emmean))
    np.testing.assert_allclose(response.table.prob, probability, rtol=1e-12)
    np.testing.assert_allclose(response.table.std_error, link.table.std_error * probability * (1 - probability))
    np.testing.assert_allclose(response.table.upper, 1 / (1 + np.exp(-link.table.upper)), rtol=1e-12)
    differences, ratios = link.contrasts("pairwise"), response.contrasts("pairwise")
    np.testing.assert_allclose(ratios.odds_ratio, np.exp(differences.estimate), rtol=1e-12)
    np.testing.assert_allclose(ratios.p_value, differences.p_value, rtol=1e-12)
    np.testing.assert_allclose(link.table.emmean, link.weights @ verbagg.beta, rtol=1e-12)


def test_several_factors_in_specs_and_by(fits) -> None:
    fit = next(f for formula, f in fits.items() if "spkr" in formula)
    crossed = fit.emmeans(["prec", "load"])
    assert crossed.table[["prec", "load"]].values.tolist()[:2] == [["break", "no"], ["maintain", "no"]]
    assert crossed.contrasts("pairwise").contrast[0] == "break no - maintain no"
    within = fit.emmeans("prec", by=["spkr", "load"]).contrasts("pairwise")
    assert list(within.columns[:3]) == ["contrast", "spkr", "load"] and len(within) == 4
    np.testing.assert_allclose(crossed.table.emmean.mean(), fit.emmeans("prec").table.emmean.mean(), rtol=1e-12)
