"""The compiled criterion of small models (lmmfast.factor.envelope) against the factor's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import case_data, reference_cases

import lmmfast
from lmmfast.factor.envelope import MAX_WORK, envelope_criterion
from lmmfast.objective import INFEASIBLE
from lmmfast.prepare import prepare, with_response

SMALL = [case for case in reference_cases() if case["id"] not in {"insteval_crossed_ml", "kb07_zcp", "kb07_slopes20"}]

#: The two criteria sum in different orders; at large θ (10× the start) their rounding
#: differs by up to about 1e-12 of the value.
ROUNDING = 1e-11


def _on_the_factor(objective, theta: np.ndarray) -> float:
    compiled, objective.envelope = objective.envelope, None
    try:
        return objective(theta)
    finally:
        objective.envelope = compiled


def _points(layout, rng: np.random.Generator) -> list[np.ndarray]:
    inside = layout.start + rng.uniform(-0.4, 0.6, layout.size)
    inside[layout.is_diagonal] = np.abs(inside[layout.is_diagonal]) + 0.05
    boundary = inside.copy()
    boundary[np.flatnonzero(layout.is_diagonal)[::2]] = 0.0
    return [layout.start, inside, boundary, 10.0 * inside]


@pytest.mark.parametrize("case", SMALL, ids=[case["id"] for case in SMALL])
def test_the_compiled_criterion_is_the_factors(case) -> None:
    model = prepare(case["formula"], case_data(case), reml=case["criterion"] == "REML")
    objective = model.objective
    if objective.envelope is None:  # left out because it would cost more than the factor
        unbounded = envelope_criterion(objective.cross_products, objective.layout, max_work=10**12)
        assert unbounded is not None and unbounded.work > MAX_WORK
        objective = model.objective.fresh()
        objective.envelope = unbounded
    for theta in _points(objective.layout, np.random.default_rng(11)):
        assert objective(theta) == pytest.approx(_on_the_factor(objective, theta), rel=ROUNDING)


def _on_the_factor_with(objective, method: str, *args):
    compiled, objective.envelope = objective.envelope, None
    try:
        return getattr(objective, method)(*args)
    finally:
        objective.envelope = compiled


def _compiled(case) -> object:
    """The case's objective with a compiled criterion, built past MAX_WORK where need be."""
    model = prepare(case["formula"], case_data(case), reml=case["criterion"] == "REML")
    objective = model.objective
    if objective.envelope is None:
        objective = model.objective.fresh()
        objective.envelope = envelope_criterion(objective.cross_products, objective.layout, max_work=10**12)
    return objective


@pytest.mark.parametrize("case", SMALL, ids=[case["id"] for case in SMALL])
def test_the_compiled_gradient_is_the_factors(case) -> None:
    """Takahashi's inverse on the envelope and the rank-one term of the response give the
    gradient the factor assembles from its selected inverse and solves."""
    objective = _compiled(case)
    for theta in _points(objective.layout, np.random.default_rng(5)):
        value, gradient = objective.value_and_gradient(theta)
        expected_value, expected = _on_the_factor_with(objective, "value_and_gradient", theta)
        assert value == pytest.approx(expected_value, rel=ROUNDING)
        assert value == objective(theta)  # the optimiser compares the two kinds of call
        np.testing.assert_allclose(gradient, expected, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("case", SMALL, ids=[case["id"] for case in SMALL])
def test_the_compiled_solution_is_the_factors(case) -> None:
    objective = _compiled(case)
    theta = _points(objective.layout, np.random.default_rng(3))[1]
    solution = objective.solve(theta)
    expected = _on_the_factor_with(objective, "solve", theta)
    for name in ("beta", "u", "b", "beta_covariance"):
        got, want = getattr(solution, name), getattr(expected, name)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10 * max(1.0, np.abs(want).max()), err_msg=name)
    for name in ("sigma", "penalised_rss", "logdet_L", "logdet_RX"):
        assert getattr(solution, name) == pytest.approx(getattr(expected, name), rel=1e-11, abs=1e-11), name


def test_the_compiled_gradient_is_zero_where_the_criterion_is_infeasible() -> None:
    objective = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy")).objective
    cp = objective.cross_products
    singular = replace(cp, XytXy=np.zeros_like(cp.XytXy))  # every pivot of [X y] is zero
    broken = objective.fresh(cross_products=singular)
    value, gradient = broken.value_and_gradient(np.array([1.0, 0.0, 1.0]))
    assert value == INFEASIBLE and gradient.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(np.linalg.LinAlgError, match="not numerically positive definite"):
        broken.solve(np.array([1.0, 0.0, 1.0]))


def test_weights_and_the_ml_criterion_agree_too() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    data["w"] = np.random.default_rng(2).uniform(0.5, 2.0, len(data))
    model = prepare("Reaction ~ Days + (Days | Subject)", data, weights="w", reml=False)
    theta = np.array([0.8, 0.1, 0.3])
    assert model.objective.envelope is not None
    assert model.objective(theta) == pytest.approx(_on_the_factor(model.objective, theta), rel=ROUNDING)


def test_large_models_keep_the_factor() -> None:
    data = lmmfast.datasets.load("insteval")
    model = prepare("y ~ 1 + service + (1 | s) + (1 | d)", data)
    assert model.objective.envelope is None
    assert "criterion compiled" not in str(model.objective.describe())


def test_the_plan_records_the_compiled_criterion() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    assert fit.engine.envelope_size == 39  # 36 random effects, 2 fixed effects, the response
    assert "criterion compiled (39 × 39 envelope)" in str(fit.engine)


def test_collinear_fixed_effects_are_infeasible_not_nan() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    model = prepare("Reaction ~ Days + (Days | Subject)", data)
    cp = model.objective.cross_products
    # an X'X whose second column repeats the first: the fixed-effects pivot is zero
    singular = cp.XytXy.copy()
    singular[1, :] = singular[0, :]
    singular[:, 1] = singular[:, 0]
    ztxy = cp.ZtXy.copy()
    ztxy[:, 1] = ztxy[:, 0]
    broken = replace(cp, XytXy=singular, ZtXy=ztxy)
    compiled = envelope_criterion(broken, model.objective.layout)
    assert compiled is not None
    assert compiled.parts(np.array([1.0, 0.0, 1.0]))[2] == -1.0
    objective = model.objective.fresh(cross_products=broken)
    assert objective(np.array([1.0, 0.0, 1.0])) == INFEASIBLE


def test_copies_hold_their_own_numbers() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    model = prepare("Reaction ~ Days + (Days | Subject)", data)
    other = with_response(model, data.Reaction.to_numpy() * 2.0)
    theta = np.array([0.9, 0.05, 0.25])
    before = model.objective(theta)
    twin = model.objective.fresh()
    other.objective(np.array([0.1, 0.0, 0.1]))
    twin(np.array([3.0, 1.0, 2.0]))
    assert model.objective(theta) == before
    # a response's copy is the criterion a model of that response has
    doubled = data.assign(Reaction=data.Reaction * 2.0)
    again = prepare("Reaction ~ Days + (Days | Subject)", doubled)
    assert other.objective(theta) == again.objective(theta)
