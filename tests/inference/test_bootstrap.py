"""Simulation, refits to a new response, and the reproducible parametric bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast


@pytest.fixture(scope="module")
def fit():
    return lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))


def test_refit_to_the_same_response_reproduces_the_fit(fit) -> None:
    again = fit.refit(fit.model.fixed.y)
    assert again.objective == pytest.approx(fit.objective, rel=1e-12)
    np.testing.assert_allclose(again.beta, fit.beta, rtol=1e-8)


def test_refit_equals_a_fresh_fit_to_the_new_response(fit) -> None:
    data = lmmfast.datasets.load("sleepstudy")
    y = fit.simulate(1, seed=11)[:, 0]
    fresh = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data.assign(Reaction=y))
    refitted = fit.refit(y)
    assert refitted.objective == pytest.approx(fresh.objective, rel=1e-9)
    np.testing.assert_allclose(refitted.beta, fresh.beta, rtol=1e-5)


def test_weighted_refit_equals_a_fresh_weighted_fit() -> None:
    data = lmmfast.datasets.load("sleepstudy_weighted")
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data, weights="w")
    y = fit.simulate(1, seed=2)[:, 0]
    fresh = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data.assign(Reaction=y), weights="w")
    assert fit.refit(y).objective == pytest.approx(fresh.objective, rel=1e-9)


def test_simulation_has_the_fitted_moments(fit) -> None:
    sims = fit.simulate(4000, seed=5)
    np.testing.assert_allclose(sims.mean(axis=1), fit.model.fixed.X @ fit.beta, atol=3.0)
    # marginal variance at Days = 0: σ_b0² + σ²
    day0 = fit.model.fixed.X[:, 1] == 0
    expected = fit.varcorr.vcov.iloc[0] + fit.sigma**2
    assert sims[day0].var(axis=1).mean() == pytest.approx(expected, rel=0.05)


def test_bootstrap_is_reproducible_serially_and_in_parallel(fit) -> None:
    serial = fit.bootstrap(12, seed=7)
    again = fit.bootstrap(12, seed=7)
    parallel = fit.bootstrap(12, seed=7, processes=2)
    assert np.array_equal(serial.to_numpy(), again.to_numpy())
    assert np.array_equal(serial.to_numpy(), parallel.to_numpy())
    assert not np.array_equal(serial.to_numpy(), fit.bootstrap(12, seed=8).to_numpy())
    assert list(serial.columns) == ["Intercept", "Days", "sigma", *fit.theta_names, "objective"]


@pytest.mark.parametrize(
    ("call", "error", "phrase"),
    [
        (lambda f: f.simulate(0), lmmfast.ArgumentError, "nsim must be a positive integer"),
        (lambda f: f.bootstrap(0), lmmfast.ArgumentError, "n must be a positive integer"),
        (lambda f: f.bootstrap(2, processes=0), lmmfast.ArgumentError, "processes must be a positive integer"),
        (lambda f: f.refit(np.ones(3)), lmmfast.DataError, "one value per observation"),
        (lambda f: f.refit(np.full(180, np.nan)), lmmfast.DataError, "missing or infinite"),
    ],
)
def test_bad_arguments(fit, call, error, phrase) -> None:
    with pytest.raises(error, match=phrase):
        call(fit)


KB07_ON_THE_FACTOR = "RTtrunc ~ S + P + C + (1 | subj) + (1 + P | item)"


@pytest.fixture(scope="module")
def kb07_fit():
    fit = lmmfast.lmm(KB07_ON_THE_FACTOR, lmmfast.datasets.load("kb07"), reml=False)
    assert fit.engine.envelope_size == 0 and fit.optsummary.algorithm == "L-BFGS-B" and not fit.singular
    return fit


def test_replicates_from_the_measured_hessian_reach_fresh_fits_optima(kb07_fit) -> None:
    """Replicates start from θ̂ with the Hessian measured there and the gradient's
    log-determinant part formed once for all of them: the same numbers serially and in
    parallel, and the optima of fresh fits to the same responses."""
    from lmmfast.inference.bootstrap import simulate

    replicates = kb07_fit.bootstrap(8, seed=3)
    assert np.array_equal(replicates.to_numpy(), kb07_fit.bootstrap(8, seed=3, processes=2).to_numpy())
    seeds = np.random.SeedSequence(3).spawn(8)
    data = lmmfast.datasets.load("kb07")
    for i in (0, 5):
        fresh = lmmfast.lmm(KB07_ON_THE_FACTOR, data.assign(RTtrunc=simulate(kb07_fit, 1, seeds[i])[:, 0]), reml=False)
        assert replicates["objective"][i] == pytest.approx(fresh.objective, rel=1e-10)
        np.testing.assert_allclose(replicates[list(kb07_fit.theta_names)].iloc[i], fresh.theta, rtol=1e-4, atol=1e-6)


def test_the_measured_hessian_saves_refits_evaluations(kb07_fit) -> None:
    """The whole Hessian at θ̂ (2 evaluations per θ, once) takes the replicates' runs to their
    optima in fewer evaluations than θ̂'s diagonal curvature: it holds θ's correlations."""
    from lmmfast.fit import curvature_of, optimum_curvature, response_estimates
    from lmmfast.inference.bootstrap import simulate

    hessian = optimum_curvature(kb07_fit)
    assert hessian.shape == (4, 4) and np.all(np.linalg.eigvalsh(hessian) > 0)
    evaluations = {}
    for name, curvature in [("diagonal", curvature_of(kb07_fit)), ("hessian", hessian)]:
        runs = [
            response_estimates(kb07_fit.model, simulate(kb07_fit, 1, seed)[:, 0], kb07_fit.theta, curvature)
            for seed in range(8)
        ]
        evaluations[name] = np.mean([run.n_evals for run in runs])
    assert evaluations["hessian"] < 0.85 * evaluations["diagonal"]


def test_a_singular_fits_replicates_keep_the_diagonal_curvature() -> None:
    from lmmfast.fit import curvature_of, optimum_curvature

    fit = lmmfast.lmm(
        "RTtrunc ~ S + P + (1 + S | subj) + (1 + P | item)",
        lmmfast.datasets.load("kb07"),
        reml=False,
        checks={"singular": "ignore"},
    )
    assert fit.singular
    assert optimum_curvature(fit) is curvature_of(fit)
