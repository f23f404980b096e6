"""Simulation-based power against the closed form of a balanced cluster-randomised design,
and its properties and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmmfast
from lmmfast.errors import ArgumentError, DataError
from lmmfast.inference.bootstrap import simulate_model
from lmmfast.power import extend_levels, model_spec, power, power_curve
from lmmfast.prepare import prepare

CLUSTERS, PER_CLUSTER = 12, 5
SIGMA_CLUSTER, SIGMA, EFFECT = 1.0, 1.0, 1.5


@pytest.fixture(scope="module")
def trial() -> pd.DataFrame:
    """Twelve clusters of five, the treatment assigned to every other cluster."""
    return pd.DataFrame(
        {
            "cluster": np.repeat([f"c{j:02d}" for j in range(CLUSTERS)], PER_CLUSTER),
            "treat": np.repeat(np.arange(CLUSTERS) % 2, PER_CLUSTER).astype(float),
        }
    )


@pytest.fixture(scope="module")
def spec(trial):
    return model_spec(
        "y ~ treat + (1 | cluster)",
        trial,
        fixef={"Intercept": 0.0, "treat": EFFECT},
        sigma=SIGMA,
        varcorr={"cluster": SIGMA_CLUSTER},
    )


def _closed_form_power(clusters: int, alpha: float = 0.05) -> float:
    """In a balanced cluster-randomised design the test of the treatment is the two-sample t
    test of the cluster means: df J − 2, noncentrality Δ / √(4 (σ_b² + σ²/m) / J)."""
    df = clusters - 2
    noncentrality = EFFECT / np.sqrt(4 * (SIGMA_CLUSTER**2 + SIGMA**2 / PER_CLUSTER) / clusters)
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def test_each_satterthwaite_test_is_the_exact_t_test_of_the_cluster_means(spec, trial) -> None:
    result = power(spec, "treat", nsim=100, method="satterthwaite", seed=4)
    model = prepare("y ~ treat + (1 | cluster)", trial.assign(y=0.0 + np.arange(len(trial))))
    templates = [model.layout.template(spec.theta, 0)]
    treated = trial.groupby("cluster").treat.first().to_numpy() == 1
    exact = []
    for seed in np.random.SeedSequence(4).spawn(100):
        y = simulate_model(model, np.array([0.0, EFFECT]), templates, SIGMA, 1, np.random.default_rng(seed))[:, 0]
        means = pd.Series(y).groupby(trial.cluster.to_numpy()).mean().to_numpy()
        exact.append(stats.ttest_ind(means[treated], means[~treated]).pvalue)
    differences = np.abs(result.p_values - np.array(exact))
    # a boundary fit (cluster variance estimated as 0) is no longer the cluster-means test
    assert np.mean(differences < 1e-6) >= 0.97
    assert result.rejections == int(np.sum(result.p_values < 0.05))


def test_power_agrees_with_the_closed_form_within_its_monte_carlo_error(spec) -> None:
    result = power(spec, "treat", nsim=400, method="satterthwaite", seed=1)
    expected = _closed_form_power(CLUSTERS)
    error = np.sqrt(expected * (1 - expected) / result.nsim)
    assert abs(result.power - expected) < 3 * error
    assert result.lower <= result.power <= result.upper
    assert result.upper - result.lower == pytest.approx(4 * error, rel=0.15)  # a 95% interval


def test_more_clusters_give_the_closed_forms_power_too(spec) -> None:
    curve = power_curve(spec, "treat", along="cluster", sizes=[8, 24], nsim=200, method="satterthwaite", seed=2)
    for size, result in zip(curve.sizes, curve.results):
        expected = _closed_form_power(size)
        assert abs(result.power - expected) < 3 * np.sqrt(expected * (1 - expected) / 200)
    assert curve.table.cluster.tolist() == [8, 24]
    assert "24 rows" not in curve.results[1].design and "120 rows" in curve.results[1].design


def test_without_an_effect_the_rejection_rate_is_the_level(spec) -> None:
    result = power(spec, "treat", nsim=300, method="satterthwaite", effect=0.0, seed=3)
    assert result.lower <= 0.05 <= result.upper


def test_the_likelihood_ratio_and_wald_tests_of_several_columns(trial) -> None:
    data = trial.assign(arm=np.repeat(np.arange(CLUSTERS) % 3, PER_CLUSTER).astype(str))
    spec = model_spec(
        "y ~ arm + (1 | cluster)",
        data,
        fixef={"Intercept": 0.0, "arm[T.1]": 1.0, "arm[T.2]": 2.0},
        sigma=1.0,
        varcorr={"cluster": 0.5},
    )
    for method in ("lr", "wald"):
        result = power(spec, "arm", nsim=20, method=method, seed=5)
        assert result.test == ("arm[T.1]", "arm[T.2]")
        assert result.nsim == 20 and 0 <= result.rejections <= 20


def test_the_likelihood_ratio_statistic_is_the_anova_of_the_two_ml_fits(spec, trial) -> None:
    result = power(spec, "treat", nsim=3, method="lr", seed=6)
    model = prepare("y ~ treat + (1 | cluster)", trial.assign(y=np.arange(len(trial), dtype=float)))
    templates = [model.layout.template(spec.theta, 0)]
    seed = np.random.SeedSequence(6).spawn(3)[0]
    y = simulate_model(model, np.array([0.0, EFFECT]), templates, SIGMA, 1, np.random.default_rng(seed))[:, 0]
    data = trial.assign(y=y)
    full = lmmfast.lmm("y ~ treat + (1 | cluster)", data, reml=False, checks={"singular": "ignore"})
    reduced = lmmfast.lmm("y ~ 1 + (1 | cluster)", data, reml=False, checks={"singular": "ignore"})
    table = lmmfast.anova(reduced, full)
    assert result.p_values[0] == pytest.approx(table["p_value"].iloc[1], rel=1e-6)


def test_processes_give_the_same_result(spec) -> None:
    one = power(spec, "treat", nsim=12, seed=7)
    two = power(spec, "treat", nsim=12, seed=7, processes=2)
    np.testing.assert_array_equal(one.p_values, two.p_values)


def test_a_fit_is_simulated_at_its_estimates() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    result = power(fit, "Days", nsim=10, seed=8)
    assert result.power == 1.0  # Days's effect is ten standard errors
    assert "180 rows; Subject 18" in str(result)
    smaller = power(fit, "Days", nsim=10, seed=8, effect=0.5, along="Subject", n=6)
    assert "60 rows; Subject 6" in smaller.design


def test_model_spec_theta_is_the_fits_theta_from_its_variance_components() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    covariance = fit.sigma**2 * fit.terms[0].template @ fit.terms[0].template.T
    spec = model_spec(
        "Reaction ~ Days + (Days | Subject)",
        lmmfast.datasets.load("sleepstudy").drop(columns="Reaction"),
        fixef=dict(zip(fit.fixef_names, fit.beta)),
        sigma=fit.sigma,
        varcorr={"Subject": covariance},
    )
    np.testing.assert_allclose(spec.theta, fit.theta, rtol=1e-10)


def test_extend_levels_copies_levels_under_new_names() -> None:
    frame = pd.DataFrame({"g": [1, 1, 2], "x": [0.1, 0.2, 0.3]})
    extended = extend_levels(frame, "g", 5)
    assert extended.g.tolist() == ["1", "1", "2", "1.2", "1.2", "2.2", "1.3", "1.3"]
    assert extended.x.tolist() == [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1, 0.2]
    assert frame.g.tolist() == [1, 1, 2]  # the caller's data are left alone
    assert extend_levels(frame, "g", 1).g.tolist() == [1, 1]


BAD = [
    ({"test": "dose"}, ArgumentError, "test names 'dose', which is not a fixed-effects column or term"),
    ({"method": "f"}, ArgumentError, "method must be one of"),
    ({"alpha": 1.5}, ArgumentError, "alpha must be a number between 0 and 1"),
    ({"nsim": 0}, ArgumentError, "nsim must be a positive integer, got 0"),
    ({"along": "cluster"}, ArgumentError, "along and n go together"),
    ({"along": "site", "n": 4}, ArgumentError, "along must be a column of the design"),
    ({"effect": float("nan")}, ArgumentError, "effect must be a finite number"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD, ids=[str(b[0]) for b in BAD])
def test_bad_arguments_are_named(spec, change, error, message) -> None:
    arguments = {"test": "treat", "nsim": 2, **change}
    with pytest.raises(error, match=message.replace("(", r"\(")):
        power(spec, **arguments)


SPEC_BAD = [
    ({"fixef": {"Intercept": 0.0}}, "fixef must give a value for each fixed-effects column"),
    ({"sigma": -1.0}, "sigma must be a positive number"),
    ({"varcorr": {"group": 1.0}}, "varcorr must give each random term's covariance, by ['cluster']"),
    ({"varcorr": {"cluster": [[1.0, 0.0], [0.0, 1.0]]}}, "must be a 1 × 1 covariance matrix"),
]


@pytest.mark.parametrize(("change", "message"), SPEC_BAD, ids=[str(b[0]) for b in SPEC_BAD])
def test_bad_specifications_are_named(trial, change, message) -> None:
    arguments = {"fixef": {"Intercept": 0.0, "treat": 1.0}, "sigma": 1.0, "varcorr": {"cluster": 1.0}, **change}
    with pytest.raises(ArgumentError, match=message.replace("(", r"\(").replace("[", r"\[")):
        model_spec("y ~ treat + (1 | cluster)", trial, **arguments)


def test_a_correlation_outside_its_range_is_refused() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    with pytest.raises(ArgumentError, match="is not positive definite"):
        model_spec(
            "Reaction ~ Days + (Days | Subject)",
            data,
            fixef={"Intercept": 250.0, "Days": 10.0},
            sigma=25.0,
            varcorr={"Subject": [[1.0, 2.0], [2.0, 1.0]]},
        )


def test_a_design_that_changes_the_fixed_effects_is_refused(trial) -> None:
    spec = model_spec(
        "y ~ C(cluster) + (1 | cluster)",
        trial,
        fixef=dict.fromkeys(["Intercept", *[f"C(cluster)[T.c{j:02d}]" for j in range(1, CLUSTERS)]], 0.0),
        sigma=1.0,
        varcorr={"cluster": 1.0},
    )
    with pytest.raises(DataError, match="The extended design has fixed-effects columns"):
        power(spec, "C(cluster)[T.c01]", nsim=2, along="cluster", n=4)
