"""The analytic gradient of the Laplace deviance equals its finite differences, on both
factorisation paths, and the second stage uses it where the link is canonical."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.generalized.family import Family
from lmmfast.generalized.laplace_gradient import fast_gradient, laplace_gradient
from lmmfast.generalized.prepare import prepare_glmm
from lmmfast.inference.numderiv import central_derivatives

# (data, formula, family, weights, a point (θ, β) away from the optimum)
CASES = {
    "cbpp binomial with trials": (
        "cbpp", "prop ~ period + (1 | herd)", "binomial", "size", [0.7, -1.3, -0.3],
    ),
    "cbpp Poisson with an offset": (
        "cbpp", "incidence ~ period + offset(log(size)) + (1 | herd)", "poisson", None, [0.5, -1.9, -0.3],
    ),
    "VerbAgg crossed": (
        "verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial", None,
        [1.5, 0.55, 0.25, 0.05, 0.35, -1.0, -2.0, -1.0],
    ),
    "grouseticks three factors": (
        "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson", None,
        [0.6, 1.1, 0.2, 46.0, -0.475, -0.03],
    ),
    "Contraception correlated slope": (
        "contraception", "use ~ age + age2 + urban + livch + (1 + urban | district)", "binomial", None,
        [0.7, -0.5, 0.5, -1.0, 0.004, -0.005, 0.7, 0.8, 0.9, 0.9],
    ),
}  # fmt: skip


def _deviance_and_point(case: str, factorization: str):
    dataset, formula, family, weights, point = CASES[case]
    model = prepare_glmm(
        formula,
        lmmfast.datasets.load(dataset),
        Family(family),
        weights=weights,
        control=lmmfast.Control(factorization=factorization),
    )
    return model.deviance.fresh(), np.asarray(point, dtype=np.float64)


@pytest.mark.parametrize("factorization", ["blocked", "cholmod"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_gradient_equals_the_deviance_differences(case, factorization):
    deviance, x = _deviance_and_point(case, factorization)
    m = deviance.n_theta
    gradient = laplace_gradient(deviance.pirls, x[:m], deviance.mode_at(x)).gradient
    # steps of 1e-4 in η: central differences then carry an error of order 1e-8 times the
    # third derivative
    steps = np.r_[np.full(m, 1e-4), 1e-4 / np.max(np.abs(deviance.pirls.X), axis=0)]
    numeric, _ = central_derivatives(deviance.laplace, x, steps)
    np.testing.assert_allclose(gradient, numeric, rtol=2e-5, atol=2e-5)
    value, same = deviance.laplace_and_gradient(x)
    assert value == pytest.approx(deviance.laplace(x), rel=1e-12)
    np.testing.assert_allclose(same, gradient, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("factorization", ["blocked", "cholmod"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_fast_gradient_equals_the_fast_deviance_differences(case, factorization):
    """glmer's nAGQ = 0 deviance: β at its joint mode with u, so only θ is differentiated."""
    deviance, point = _deviance_and_point(case, factorization)
    pirls = deviance.pirls
    theta = point[: deviance.n_theta]
    start = np.zeros(pirls.X.shape[1])

    def at(t):  # from the same start each time, so the differences see one smooth function
        return pirls.solve(t, start, free_beta=True, u=np.zeros(pirls.q))

    gradient = fast_gradient(pirls, theta, at(theta)).gradient
    numeric, _ = central_derivatives(lambda t: at(t).laplace, theta, 1e-4)
    np.testing.assert_allclose(gradient, numeric, rtol=2e-5, atol=2e-5)
    value, same = deviance.fast_and_gradient(theta)
    assert value == pytest.approx(at(theta).laplace, rel=1e-10)
    np.testing.assert_allclose(same, gradient, rtol=1e-7, atol=1e-7)


def test_the_second_stage_takes_the_gradient_where_the_link_is_canonical():
    data = lmmfast.datasets.load("cbpp")
    logit = lmmfast.glmm("prop ~ period + (1 | herd)", data, weights="size")
    probit = lmmfast.glmm("prop ~ period + (1 | herd)", data, weights="size", link="probit")
    assert logit.optsummary.algorithm == "L-BFGS-B"
    assert probit.optsummary.algorithm == "NLOPT_LN_BOBYQA"
    assert [stage.algorithm for stage in logit.stages] == ["L-BFGS-B", "L-BFGS-B"]


@pytest.mark.parametrize("nagq", [0, 1])
def test_the_gradient_fit_reaches_the_derivative_free_optimum(nagq):
    """L-BFGS-B with the gradient ends where BOBYQA without it ends (or lower), with the same
    standard errors from the Hessian of differenced gradients as from differenced deviances."""
    data = lmmfast.datasets.load("verbagg")
    formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
    with_gradient = lmmfast.glmm(formula, data, nagq=nagq)
    without = lmmfast.glmm(formula, data, nagq=nagq, control=lmmfast.Control(optimizer="bobyqa"))
    assert with_gradient.optsummary.algorithm == "L-BFGS-B"
    assert without.optsummary.algorithm == "NLOPT_LN_BOBYQA"
    assert with_gradient.objective <= without.objective * (1 + 1e-12)
    np.testing.assert_allclose(with_gradient.beta, without.beta, rtol=1e-4)
    np.testing.assert_allclose(with_gradient.stderr, without.stderr, rtol=1e-4)


def test_newton_steps_finish_a_second_stage_that_stopped_short():
    """With lme4's absolute tolerance raised to a whole deviance unit L-BFGS-B stops early; the
    Newton steps from the exact Hessian (taken while one would gain over 1e-4) reach the
    optimum all the same, at a point the optimiser never evaluated."""
    data = lmmfast.datasets.load("verbagg")
    formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
    default = lmmfast.glmm(formula, data)
    loose = lmmfast.glmm(formula, data, control=lmmfast.Control(ftol_abs=1.0))
    second = loose.stages[-1]
    assert second.final_objective < second.trace_objective.min() - 1e-4
    assert loose.objective == pytest.approx(default.objective, abs=1e-6)
    np.testing.assert_allclose(loose.beta, default.beta, atol=1e-3 * default.stderr.to_numpy().min())
    np.testing.assert_allclose(loose.stderr, default.stderr, rtol=1e-4)


@pytest.mark.parametrize(
    ("dataset", "formula"),
    [
        ("verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"),
        ("contraception", "use ~ age + age2 + urban + livch + (1 + urban | district)"),
    ],
)
def test_both_paths_fit_the_same_optimum_with_the_gradient(dataset, formula):
    data = lmmfast.datasets.load(dataset)
    blocked = lmmfast.glmm(formula, data, factorization="blocked")
    cholmod = lmmfast.glmm(formula, data, factorization="cholmod")
    assert [stage.algorithm for stage in cholmod.stages] == ["L-BFGS-B", "L-BFGS-B"]
    assert cholmod.objective == pytest.approx(blocked.objective, rel=1e-10)
    np.testing.assert_allclose(cholmod.beta, blocked.beta, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cholmod.stderr, blocked.stderr, rtol=1e-5)


@pytest.mark.parametrize("nagq", [0, 1])
def test_a_model_without_fixed_effects_has_its_gradient(nagq):
    """``y ~ 0 + (1 | g)``: no β to move with θ (found by the fuzz test)."""
    data = lmmfast.datasets.load("cbpp")
    with_gradient = lmmfast.glmm("prop ~ 0 + (1 | herd)", data, weights="size", nagq=nagq)
    without = lmmfast.glmm(
        "prop ~ 0 + (1 | herd)", data, weights="size", nagq=nagq, control=lmmfast.Control(optimizer="bobyqa")
    )
    assert with_gradient.stages[0].algorithm == "L-BFGS-B"
    assert with_gradient.objective <= without.objective * (1 + 1e-10)
    np.testing.assert_allclose(with_gradient.theta, without.theta, rtol=1e-4)
