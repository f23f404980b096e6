"""The blocked path's coupling routes: each forced through the plan reaches the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.prepare import prepare


@pytest.mark.parametrize(
    ("dataset", "formula", "control", "plan"),
    [
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"coupling": "dense"}, ("blocked", "dense")),
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"coupling": "grouped"}, ("blocked", "grouped")),
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"coupling": "sparse"}, ("blocked", "sparse")),
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"factorization": "cholmod"}, ("cholmod", None)),
    ],
)
def test_the_plan_forces_each_path_and_route_to_the_same_optimum(dataset, formula, control, plan) -> None:
    data = lmmfast.datasets.load(dataset)
    reference = lmmfast.lmm(formula, data, optimizer="bobyqa")
    fit = lmmfast.lmm(formula, data, control=lmmfast.Control(optimizer="bobyqa", **control))
    assert (fit.engine.path, fit.engine.route) == plan
    assert fit.objective == pytest.approx(reference.objective, rel=1e-9)
    assert str(fit.engine) in fit.summary(verbose=True)


def test_a_route_the_model_cannot_take_is_refused() -> None:
    with pytest.raises(lmmfast.ArgumentError, match=r"coupling='grouped' .* random intercepts only"):
        lmmfast.lmm(
            "RTtrunc ~ S + (1 + S | subj) + (1 | item)",
            lmmfast.datasets.load("kb07"),
            control=lmmfast.Control(coupling="grouped"),
        )
    with pytest.raises(lmmfast.ArgumentError, match="cannot go with factorization='cholmod'"):
        lmmfast.Control(factorization="cholmod", coupling="dense")


@pytest.mark.parametrize(
    "dataset, formula",
    [
        ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S + P | subj) + (1 + P + C | item)"),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
        ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"),
    ],
)
def test_dense_and_sparse_coupling_give_the_same_value_and_gradient(dataset, formula) -> None:
    data = lmmfast.datasets.load(dataset)
    results, solves = [], []
    for route in ("dense", "sparse"):
        model = prepare(formula, data, reml=False, control=lmmfast.Control(coupling=route))
        assert model.objective.factor.describe().route == route
        model.objective.envelope = None  # the factor's own values
        theta = model.layout.start * 0.7 + 0.05 * np.arange(1, model.layout.size + 1)  # a different λ per term
        results.append(model.objective.value_and_gradient(theta))
        rhs = np.random.default_rng(2).normal(size=(model.objective.cross_products.q, 2))
        solves.append((model.objective.factor.solve_L(rhs), model.objective.factor.solve_Lt(rhs)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-8, atol=1e-8 * np.abs(results[1][1]).max())
    for dense, sparse in zip(solves[0], solves[1]):
        np.testing.assert_allclose(dense, sparse, rtol=1e-10, atol=1e-12 * np.abs(sparse).max())


@pytest.mark.parametrize(
    "dataset, formula, groups",
    [
        ("sim", "y ~ cond + freq + (1 | subj) + (1 | item)", 1),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", 1),
        ("kb07", "RTtrunc ~ 1 + S + P + C + (1 | subj) + (1 | item)", 2),
        ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", 86),
    ],
)
def test_grouped_and_sparse_coupling_give_the_same_value_and_gradient(dataset, formula, groups) -> None:
    if dataset == "sim":
        data = lmmfast.datasets.simulate_crossed(200, 50, 10, seed=3)
    else:
        data = lmmfast.datasets.load(dataset)
    results = []
    for route in ("grouped", "sparse"):
        model = prepare(formula, data, reml=True, control=lmmfast.Control(coupling=route))
        factor = model.objective.factor
        assert factor.describe().route == route
        if route == "grouped":
            assert len(factor._route.grouped.counts) == groups
        theta = model.layout.start * 0.7 + 0.05 * np.arange(1, model.layout.size + 1)  # a different λ per term
        results.append(model.objective.value_and_gradient(theta))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-8, atol=1e-8 * np.abs(results[1][1]).max())
