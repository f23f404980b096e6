"""Terms on one grouping factor merged into one term before the cross-products
(lmmfast.design.amalgamate): the same numbers on both paths, a smaller factor."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.design.amalgamate import amalgamate
from lmmfast.prepare import prepare

MODELS = [
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S + P || subj) + (1 + P + C || item)", False),
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S | subj) + (0 + P | subj) + (1 + P + C || item)", True),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)", True),
    ("sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", False),
]


def _modes(prepared, theta):
    b = prepared.objective.solve(theta).b
    offsets = prepared.objective.cross_products.column_offsets
    return np.concatenate([m.ravel() for m in prepared.engine.model_modes(b, offsets)])


@pytest.mark.parametrize("factorization", ["blocked", "cholmod"])
@pytest.mark.parametrize(("dataset", "formula", "reml"), MODELS)
def test_merged_terms_give_the_same_objective_gradient_and_modes(dataset, formula, reml, factorization) -> None:
    data = lmmfast.datasets.load(dataset)
    merged = prepare(formula, data, reml=reml, control=lmmfast.Control(factorization=factorization))
    separate = prepare(
        formula, data, reml=reml, control=lmmfast.Control(factorization=factorization, merge_terms=False)
    )
    assert merged.engine.merged and not separate.engine.merged
    assert merged.objective.factor.describe().merged_terms
    assert len(merged.engine.terms) < len(separate.engine.terms) == len(merged.terms)
    theta = merged.layout.start * 0.6 + 0.1 * np.random.default_rng(7).normal(size=merged.layout.size)
    assert merged.objective(theta) == pytest.approx(separate.objective(theta), rel=1e-12)
    if factorization == "blocked":
        value, gradient = merged.objective.value_and_gradient(theta)
        expected_value, expected_gradient = separate.objective.value_and_gradient(theta)
        assert value == pytest.approx(expected_value, rel=1e-12)
        np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-9, atol=1e-9 * np.abs(expected_gradient).max())
    np.testing.assert_allclose(_modes(merged, theta), _modes(separate, theta), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(merged.objective.solve(theta).beta, separate.objective.solve(theta).beta, rtol=1e-10)


@pytest.mark.filterwarnings("ignore::lmmfast.SingularFitWarning")
def test_fits_with_and_without_merging_agree_term_by_term() -> None:
    data = lmmfast.datasets.load("kb07")
    formula = "RTtrunc ~ 1 + S + P + (1 + S + P || subj) + (1 + S || item)"
    merged = lmmfast.lmm(formula, data, reml=False)
    separate = lmmfast.lmm(formula, data, reml=False, control=lmmfast.Control(merge_terms=False))
    assert merged.objective == pytest.approx(separate.objective, rel=1e-9)
    assert merged.theta_names == separate.theta_names
    np.testing.assert_allclose(merged.theta, separate.theta, rtol=1e-4, atol=1e-5)
    for a, b in zip(merged.terms, separate.terms):
        assert (a.name, a.columns) == (b.name, b.columns)
        np.testing.assert_allclose(a.modes, b.modes, rtol=1e-3, atol=1e-2)
    for name in merged.cond_var:
        np.testing.assert_allclose(merged.cond_var[name], separate.cond_var[name], rtol=1e-3, atol=1e-3)


def test_uncorrelated_terms_are_merged_and_shrink_the_dense_block() -> None:
    formula = "RTtrunc ~ 1 + S + P + C + (1 + S + P || subj) + (1 + P + C || item)"
    factor = prepare(formula, lmmfast.datasets.load("kb07"), reml=False).objective.factor
    # merged: the 56 subjects × 3 first, the 32 items × 3 dense (separately: 2 × 56 + 3 × 32 = 208)
    assert factor.dense_size == 96


def test_terms_on_different_factors_are_not_merged() -> None:
    prepared = prepare("diameter ~ 1 + (1 | plate) + (1 | sample)", lmmfast.datasets.load("penicillin"))
    assert not prepared.engine.merged and prepared.engine.terms == tuple(prepared.terms)
    assert not prepared.objective.factor.describe().merged_terms


def test_merged_terms_are_ordered_by_size_and_keep_their_pieces_order() -> None:
    prepared = prepare(
        "RTtrunc ~ 1 + (1 | item) + (0 + S | subj) + (1 | subj) + (0 + P | item)", lmmfast.datasets.load("kb07")
    )
    engine = amalgamate(prepared.terms)
    assert [(t.group, t.columns) for t in engine.terms] == [
        ("subj", ("S", "(Intercept)")),
        ("item", ("(Intercept)", "P")),
    ]
    assert [prepared.terms[i].columns for i in range(4)] == [("S",), ("(Intercept)",), ("(Intercept)",), ("P",)]
    assert engine.blocks == ((0, 0), (0, 1), (1, 0), (1, 1))
