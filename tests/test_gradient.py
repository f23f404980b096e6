"""The analytic gradient of the profiled criterion against finite differences, and the
pieces it is built from."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.api import prepare
from lmmfast.parameters import ThetaLayout

MODELS = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", False),
    ("sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", False),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
    ("pastes", "strength ~ 1 + (1 | batch/cask)", True),
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S + P | subj) + (1 + P + C | item)", False),
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S | subj) + (1 + P + C || item)", True),
    # merged `||` pieces as the first term, on the dense coupling (every subject sees every item)
    ("kb07", "RTtrunc ~ 1 + S + P + (1 + S + P || subj) + (1 + S | item)", False),
    ("machines", "score ~ Machine + (0 + Machine | Worker) + (1 | Machine:Worker)", True),
    ("hsb82", "mAch ~ meanses * cses + sx + minrty + (cses | school)", True),
]


def _central_differences(objective, theta: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Fourth-order central differences (error O(h⁴))."""
    out = np.empty_like(theta)
    for i in range(len(theta)):
        h = step * max(1.0, abs(theta[i]))
        values = []
        for shift in (-2, -1, 1, 2):
            point = theta.copy()
            point[i] += shift * h
            values.append(objective(point))
        out[i] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * h)
    return out


def _points(layout: ThetaLayout, rng: np.random.Generator) -> list[np.ndarray]:
    inside = layout.start + rng.uniform(-0.4, 0.6, layout.size)
    inside[layout.is_diagonal] = np.abs(inside[layout.is_diagonal]) + 0.05
    boundary = inside.copy()
    boundary[np.flatnonzero(layout.is_diagonal)[::2]] = 0.0  # every other variance at exactly 0
    near_singular = inside.copy()
    near_singular[np.flatnonzero(layout.is_diagonal)[-1]] = 1e-7
    return [inside, boundary, near_singular]


@pytest.mark.parametrize(("dataset", "formula", "reml"), MODELS, ids=[f"{m[0]}-{m[1]}-{m[2]}" for m in MODELS])
def test_gradient_matches_finite_differences(dataset, formula, reml) -> None:
    model = prepare(formula, lmmfast.datasets.load(dataset), reml=reml, factorization="blocked")
    rng = np.random.default_rng(7)
    for theta in _points(model.layout, rng):
        value, gradient = model.objective.value_and_gradient(theta)
        assert value == model.objective(theta)
        numeric = _central_differences(model.objective, theta)
        scale = max(1.0, float(np.abs(numeric).max()))
        np.testing.assert_allclose(gradient, numeric, rtol=0, atol=2e-6 * scale)


def test_gradient_with_prior_weights() -> None:
    data = lmmfast.datasets.load("sleepstudy_weighted")
    model = prepare("Reaction ~ Days + (Days | Subject)", data, weights="w")
    theta = np.array([0.8, 0.1, 0.3])
    _, gradient = model.objective.value_and_gradient(theta)
    np.testing.assert_allclose(gradient, _central_differences(model.objective, theta), rtol=1e-6)


def test_gradient_vanishes_at_the_optimum() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    _, gradient = fit.model.objective.value_and_gradient(fit.theta)
    assert np.abs(gradient).max() < 1e-3


def test_canonical_theta_leaves_the_objective_unchanged() -> None:
    model = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    mirrored = np.array([-0.9, 0.2, -0.3])
    canonical = model.layout.canonical(mirrored)
    assert canonical.tolist() == [0.9, -0.2, 0.3]
    assert model.objective(canonical) == pytest.approx(model.objective(mirrored), rel=1e-13)


@pytest.mark.parametrize(("dataset", "formula", "reml"), MODELS, ids=[f"{m[0]}-{m[1]}-{m[2]}" for m in MODELS])
def test_the_cholmod_paths_gradient_is_the_blocked_paths(dataset, formula, reml) -> None:
    """The CHOLMOD path's gradient comes from M⁻¹ on its factor's pattern (Takahashi), the
    blocked path's from its own selected inverse: two computations of one quantity."""
    data = lmmfast.datasets.load(dataset)
    on_cholmod = prepare(formula, data, reml=reml, factorization="cholmod").objective
    on_blocks = prepare(formula, data, reml=reml, factorization="blocked").objective
    on_cholmod.envelope = on_blocks.envelope = None  # the factors' own values
    for theta in _points(on_cholmod.layout, np.random.default_rng(7)):
        value, gradient = on_cholmod.value_and_gradient(theta)
        expected_value, expected = on_blocks.value_and_gradient(theta)
        assert value == pytest.approx(expected_value, rel=1e-12)
        np.testing.assert_allclose(gradient, expected, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(expected).max()))
