"""Properties of generalized fits: equivalent ways to give the response, invariances, the
per-observation methods, and the output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmmfast

CBPP = "prop ~ period + (1 | herd)"
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return lmmfast.datasets.load("cbpp")


@pytest.fixture(scope="module")
def cbpp_fit(cbpp) -> lmmfast.GlmmResult:
    return lmmfast.glmm(CBPP, cbpp, weights="size")


@pytest.fixture(scope="module")
def verbagg() -> pd.DataFrame:
    return lmmfast.datasets.load("verbagg")


def test_cbind_is_a_proportion_with_its_trials(cbpp, cbpp_fit):
    fit = lmmfast.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    assert fit.objective == pytest.approx(cbpp_fit.objective, rel=1e-9)
    np.testing.assert_allclose(fit.beta, cbpp_fit.beta, rtol=1e-6)


@pytest.mark.parametrize("coding", ["categorical", "boolean"])
def test_a_two_level_or_boolean_response_is_its_0_1_coding(verbagg, coding):
    formula = "r2 ~ Anger + Gender + (1 | id)"
    numeric = lmmfast.glmm(formula, verbagg, nagq=0)
    recoded = verbagg.assign(r2=np.where(verbagg.r2 == 1, "Y", "N") if coding == "categorical" else verbagg.r2 == 1)
    fit = lmmfast.glmm(formula, recoded, nagq=0)
    assert fit.objective == pytest.approx(numeric.objective, rel=1e-12)
    if coding == "categorical":
        assert fit.model.response.success == "Y"


def test_an_offset_in_the_formula_is_the_offset_argument(cbpp):
    in_formula = lmmfast.glmm("incidence ~ period + offset(log(size)) + (1 | herd)", cbpp, family="poisson")
    as_argument = lmmfast.glmm("incidence ~ period + (1 | herd)", cbpp, family="poisson", offset=np.log(cbpp["size"]))
    assert in_formula.objective == pytest.approx(as_argument.objective, rel=1e-10)
    np.testing.assert_allclose(in_formula.beta, as_argument.beta, rtol=1e-7)
    assert "Offset:" in as_argument.summary() and "Offset:" not in in_formula.summary()


def test_row_order_does_not_change_the_fit(verbagg):
    fit = lmmfast.glmm(VERBAGG, verbagg, nagq=0)
    shuffled = verbagg.sample(frac=1.0, random_state=3).reset_index(drop=True)
    other = lmmfast.glmm(VERBAGG, shuffled, nagq=0)
    assert other.objective == pytest.approx(fit.objective, rel=1e-9)
    np.testing.assert_allclose(other.beta, fit.beta, rtol=1e-5, atol=1e-7)


def test_a_fit_is_deterministic(cbpp):
    first, second = (lmmfast.glmm(CBPP, cbpp, weights="size") for _ in range(2))
    assert first.objective == second.objective
    np.testing.assert_array_equal(first.beta, second.beta)
    np.testing.assert_array_equal(first.beta_covariance, second.beta_covariance)


def test_both_factorizations_reach_the_same_optimum(verbagg):
    blocked = lmmfast.glmm(VERBAGG, verbagg, nagq=0, factorization="blocked")
    cholmod = lmmfast.glmm(VERBAGG, verbagg, nagq=0, factorization="cholmod")
    assert cholmod.objective == pytest.approx(blocked.objective, rel=1e-8)


@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_other_links_fit_and_are_recorded(cbpp, cbpp_fit, link):
    fit = lmmfast.glmm(CBPP, cbpp, weights="size", link=link)
    assert fit.link == link and f"( {link} )" in fit.summary()
    # the same data: the fits' likelihoods are close, their coefficients on other scales
    assert fit.objective == pytest.approx(cbpp_fit.objective, rel=0.02)
    assert not np.allclose(fit.beta, cbpp_fit.beta, rtol=0.05)
    assert np.all((fit.fitted() > 0) & (fit.fitted() < 1))


def test_fitted_values_are_the_inverse_link_of_the_linear_predictor(cbpp_fit):
    eta = cbpp_fit.fitted("link")
    np.testing.assert_allclose(cbpp_fit.fitted(), 1.0 / (1.0 + np.exp(-eta)), rtol=1e-12)


def test_prediction_on_the_fitted_rows_is_the_fitted_values(cbpp, cbpp_fit):
    np.testing.assert_allclose(cbpp_fit.predict(cbpp), cbpp_fit.fitted(), rtol=1e-10)
    np.testing.assert_allclose(cbpp_fit.predict(cbpp, type="link"), cbpp_fit.fitted("link"), rtol=1e-10)
    population = cbpp_fit.predict(cbpp, type="link", re="none")
    np.testing.assert_allclose(population, cbpp_fit.model.fixed.X @ cbpp_fit.beta, rtol=1e-12)


def test_prediction_takes_the_formulas_offset_from_newdata(cbpp):
    fit = lmmfast.glmm("incidence ~ period + offset(log(size)) + (1 | herd)", cbpp, family="poisson")
    np.testing.assert_allclose(fit.predict(cbpp), fit.fitted(), rtol=1e-10)
    doubled = fit.predict(cbpp.assign(size=2 * cbpp["size"]))
    np.testing.assert_allclose(doubled, 2 * fit.fitted(), rtol=1e-10)


def test_residuals_of_each_type(cbpp_fit):
    response = cbpp_fit.model.response
    deviance = cbpp_fit.residuals("deviance")
    assert float(np.sum(deviance**2)) == pytest.approx(cbpp_fit.deviance, rel=1e-10)
    np.testing.assert_allclose(cbpp_fit.residuals("response"), response.y - cbpp_fit.fitted(), atol=1e-14)
    mu = cbpp_fit.fitted()
    pearson = (response.y - mu) * np.sqrt(response.weights / (mu * (1 - mu)))
    np.testing.assert_allclose(cbpp_fit.residuals("pearson"), pearson, rtol=1e-10)
    working = (response.y - mu) / (mu * (1 - mu))
    np.testing.assert_allclose(cbpp_fit.residuals("working"), working, rtol=1e-10)
    with pytest.raises(lmmfast.ArgumentError, match="residual type must be"):
        cbpp_fit.residuals("raw")


def test_conditional_variances_are_the_inverse_curvature_at_the_modes(cbpp_fit):
    table = cbpp_fit.ranef_table()
    assert list(table.columns) == ["grpvar", "term", "grp", "condval", "condsd"] and len(table) == 15
    # one scalar term: Var(b_j | y) = θ² / (θ² Σ_{i in j} w_i + 1), w = trials μ(1 − μ) for the logit
    mu = cbpp_fit.fitted()
    working = cbpp_fit.model.response.weights * mu * (1 - mu)
    per_herd = np.bincount(cbpp_fit.model.terms[0].codes, weights=working)
    theta = cbpp_fit.theta[0]
    np.testing.assert_allclose(table.condsd, np.sqrt(theta**2 / (theta**2 * per_herd + 1)), rtol=1e-7)
    assert cbpp_fit.cond_var["herd"].shape == (15, 1, 1)


def test_summary_names_both_deviances_and_the_z_tests(cbpp_fit):
    text = cbpp_fit.summary()
    assert text.startswith("Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)")
    assert "-2*log(L)" in text and "lme4's deviance()): 75.07" in text
    assert "z value Pr(>|z|)" in text and "Family: binomial  ( logit )" in text
    assert "Residual" not in text


def test_to_dict_is_json_and_agrees_with_the_fit(cbpp_fit):
    record = json.loads(json.dumps(cbpp_fit.to_dict()))
    assert record["schema"] == "lmmfast-glmm/1" and record["family"] == "binomial"
    assert record["objective"] == cbpp_fit.objective and record["deviance"] == cbpp_fit.deviance
    assert record["aic"] == pytest.approx(cbpp_fit.objective + 2 * 3)


def test_fast_and_laplace_fits_are_close(verbagg):
    fast = lmmfast.glmm(VERBAGG, verbagg, nagq=0)
    laplace = lmmfast.glmm(VERBAGG, verbagg, nAGQ=1)
    assert laplace.objective <= fast.objective
    np.testing.assert_allclose(fast.beta, laplace.beta, rtol=0.05, atol=0.01)


def test_simulated_responses_are_proportions_of_the_trials(cbpp_fit):
    simulated = cbpp_fit.simulate(4, seed=2)
    trials = cbpp_fit.model.response.trials[:, None]
    assert simulated.shape == (56, 4)
    np.testing.assert_allclose(simulated * trials, np.round(simulated * trials), atol=1e-12)
    assert np.all((simulated >= 0) & (simulated <= 1))
    np.testing.assert_array_equal(simulated, cbpp_fit.simulate(4, seed=2))


def test_a_refit_to_its_own_response_is_the_fit(cbpp_fit):
    again = cbpp_fit.refit(cbpp_fit.model.response.y)
    assert again.objective == pytest.approx(cbpp_fit.objective, rel=1e-9)
    np.testing.assert_allclose(again.beta, cbpp_fit.beta, rtol=1e-5)
    with pytest.raises(lmmfast.DataError, match="proportions of the fit's trials"):
        cbpp_fit.refit(np.full(56, 0.123))


def test_the_bootstrap_is_the_same_in_one_process_or_two(cbpp_fit):
    serial = cbpp_fit.bootstrap(8, seed=5)
    parallel = cbpp_fit.bootstrap(8, seed=5, processes=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(serial.columns) == ["Intercept", "period", "herd.(Intercept)", "objective"]
    # the replicates scatter around the estimates
    assert abs(serial["period"].mean() - cbpp_fit.fixef["period"]) < 3 * cbpp_fit.stderr["period"]


def test_wald_intervals_are_estimate_plus_minus_z_se(cbpp_fit):
    table = cbpp_fit.confint()
    np.testing.assert_allclose(table.upper - table.lower, 2 * 1.959963984540054 * cbpp_fit.stderr, rtol=1e-12)
    boot = cbpp_fit.confint("boot", n=20, seed=1)
    assert list(boot.index) == ["Intercept", "period", "herd.(Intercept)"]
    assert np.all(boot.lower < boot.upper)
    with pytest.raises(lmmfast.ArgumentError, match="confint method must be 'wald' or 'boot'"):
        cbpp_fit.confint("profile")


def test_anova_compares_generalized_fits_of_one_kind(verbagg):
    small = lmmfast.glmm("r2 ~ Anger + Gender + (1 | id)", verbagg, nagq=0)
    large = lmmfast.glmm("r2 ~ Anger + Gender + (1 | id) + (1 | item)", verbagg, nagq=0)
    table = lmmfast.anova(large, small)
    assert list(table.npar) == [4, 5]
    assert table.chisq.iloc[1] == pytest.approx(small.objective - large.objective)
    linear = lmmfast.lmm("r2 ~ Anger + Gender + (1 | id)", verbagg, checks={"binary_response": "ignore"})
    with pytest.raises(lmmfast.DataError, match="different kinds"):
        lmmfast.anova(small, linear)


def test_the_check_of_the_optimum_reports_a_point_short_of_it():
    from lmmfast.generalized.fit import hessian_covariance

    def bowl(x):  # a deviance whose minimum is at θ = 0.5, γ = 1
        return (x[0] - 0.5) ** 2 + 2.0 * (x[1] - 1.0) ** 2

    identity = np.eye(1)
    _, source, gain = hessian_covariance(
        bowl, np.array([0.5, 1.0]), 1, identity, identity, {"convergence": "raise"}, 1e-3
    )
    assert source == "hessian" and gain == pytest.approx(0.0, abs=1e-12)
    with pytest.warns(lmmfast.ConvergenceWarning, match="a Newton step from it would lower the deviance by 0.5"):
        _, _, gain = hessian_covariance(
            bowl, np.array([0.5, 0.5]), 1, identity, identity, {"convergence": "warn"}, 1e-3
        )
    assert gain == pytest.approx(0.5)


def test_reference_optima_pass_their_check(cbpp_fit):
    assert cbpp_fit.solution.newton_gain is not None and cbpp_fit.solution.newton_gain < 1e-6
    assert cbpp_fit.converged


def test_verbose_prints_the_plan_and_each_stage_in_its_parameters(cbpp, capsys):
    fit = lmmfast.glmm(CBPP, cbpp, weights="size", verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Engine: blocked path")
    stage_one = [line for line in lines[1:] if "  θ [" in line]
    stage_two = [line for line in lines[1:] if "  θ, β [" in line]
    assert len(stage_one) == fit.stages[0].n_evals and len(stage_two) == fit.stages[1].n_evals


def test_caterpillar_plot_of_a_generalized_fit(cbpp_fit):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    figure = cbpp_fit.plot_ranef()
    (axis,) = figure.axes
    assert axis.get_title() == "herd: (Intercept)" and axis.get_xlabel() == "conditional mode"
    points = axis.lines[0].get_xdata()
    assert len(points) == 15 and np.all(np.diff(points) >= 0)  # one per herd, sorted
    np.testing.assert_allclose(np.sort(points), np.sort(cbpp_fit.ranef["herd"].to_numpy()[:, 0]))


def test_notebooks_show_a_generalized_fits_summary(cbpp_fit):
    page = cbpp_fit._repr_html_()
    assert page.startswith('<pre class="lmmfast-summary">Generalized linear mixed model fit by maximum likelihood')


def test_crossed_conditional_variances_equal_the_dense_formula() -> None:
    data = lmmfast.datasets.simulate_crossed(30, 20, 10, family="binomial", seed=6)
    fit = lmmfast.glmm("y ~ cond + (1 + cond | subj) + (1 | item)", data, checks={"singular": "ignore"})
    assert fit.engine.path == "blocked" and fit.engine.dense_size > 0  # the selected inverse, not solves
    terms = fit.model.terms
    Z = np.hstack([t.z_block().toarray() for t in terms])
    lam = np.zeros((Z.shape[1], Z.shape[1]))
    offset = 0
    for term, result in zip(terms, fit.terms):
        size = term.n_levels * term.k
        lam[offset : offset + size, offset : offset + size] = np.kron(np.eye(term.n_levels), result.template)
        offset += size
    mu = fit.fitted()
    weights = mu * (1 - mu)  # Bernoulli rows, logit link
    dense = lam @ np.linalg.inv(lam.T @ Z.T @ (weights[:, None] * Z) @ lam + np.eye(len(lam))) @ lam.T
    offset = 0
    for term, result in zip(terms, fit.terms):
        for level in range(term.n_levels):
            rows = slice(offset + level * term.k, offset + (level + 1) * term.k)
            np.testing.assert_allclose(fit.cond_var[result.name][level], dense[rows, rows], rtol=1e-7, atol=1e-12)
        offset += term.n_levels * term.k
