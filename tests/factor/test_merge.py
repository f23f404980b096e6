"""Terms on one grouping factor factored as one term (lmmfast.factor.merge)."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.api import prepare
from lmmfast.factor import choose

MODELS = [
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S + P || subj) + (1 + P + C || item)", False),
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S | subj) + (0 + P | subj) + (1 + P + C || item)", True),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)", True),
    ("sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", False),
]


@pytest.mark.parametrize("dataset, formula, reml", MODELS)
def test_merged_terms_give_the_same_objective_gradient_and_modes(monkeypatch, dataset, formula, reml) -> None:
    data = lmmfast.datasets.load(dataset)
    merged = prepare(formula, data, reml=reml)
    assert merged.objective.factor._merged is not None
    monkeypatch.setattr(choose, "merge_terms", lambda *args: None)
    separate = prepare(formula, data, reml=reml)
    theta = merged.layout.start * 0.6 + 0.1 * np.random.default_rng(7).normal(size=merged.layout.size)
    value, gradient = merged.objective.value_and_gradient(theta)
    expected_value, expected_gradient = separate.objective.value_and_gradient(theta)
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-9, atol=1e-9 * np.abs(expected_gradient).max())
    solution, expected = merged.objective.solve(theta), separate.objective.solve(theta)
    np.testing.assert_allclose(solution.b, expected.b, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(solution.beta, expected.beta, rtol=1e-10)


def test_uncorrelated_terms_are_merged_and_shrink_the_dense_block() -> None:
    formula = "RTtrunc ~ 1 + S + P + C + (1 + S + P || subj) + (1 + P + C || item)"
    factor = prepare(formula, lmmfast.datasets.load("kb07"), reml=False).objective.factor
    # merged: the 56 subjects × 3 first, the 32 items × 3 dense (separately: 2 × 56 + 3 × 32 = 208)
    assert factor.dense_size == 96


def test_terms_on_different_factors_are_not_merged() -> None:
    factor = prepare("diameter ~ 1 + (1 | plate) + (1 | sample)", lmmfast.datasets.load("penicillin")).objective.factor
    assert factor._merged is None
