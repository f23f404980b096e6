"""The analytic gradient of the profiled criterion against finite differences, and the
pieces it is built from."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.api import prepare
from lmmfast.factor.dense_coupling import DenseCoupling
from lmmfast.factor.inverse_blocks import coupled_rows, mirror_lower
from lmmfast.factor.rank_update import UpdatePattern, subtract_outer_products
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


def test_cholmod_path_has_no_gradient() -> None:
    model = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"), factorization="cholmod")
    assert not model.objective.has_gradient
    with pytest.raises(NotImplementedError, match="blocked"):
        model.objective.value_and_gradient(np.ones(1))


def _random_pattern(rng: np.random.Generator, k1: int, levels: int, size: int) -> tuple[UpdatePattern, np.ndarray]:
    rows = [np.sort(rng.choice(size, rng.integers(1, size // 2), replace=False)) for _ in range(levels)]
    entry_ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    pattern = UpdatePattern.build(k1, entry_ptr, np.concatenate(rows), size)
    return pattern, rng.normal(size=int(entry_ptr[-1]) * k1)


def _dense_coupling(pattern: UpdatePattern, values: np.ndarray, size: int) -> np.ndarray:
    """L21 as a dense size × (levels k1) matrix."""
    k1 = pattern.k1
    levels = np.searchsorted(np.unique(pattern.level_start), pattern.level_start)
    dense = np.zeros((size, (levels.max() + 1) * k1))
    for e, (row, level) in enumerate(zip(pattern.rows, levels)):
        dense[row, level * k1 : (level + 1) * k1] = values[e * k1 : (e + 1) * k1]
    return dense


@pytest.mark.parametrize("k1", [1, 2, 3])
def test_rank_update_matches_dense_product_for_any_thread_count(k1) -> None:
    rng = np.random.default_rng(k1)
    size = 40
    pattern, values = _random_pattern(rng, k1, 25, size)
    dense = _dense_coupling(pattern, values, size)
    results = []
    for threads in (1, 2, 3):
        S = np.zeros((size, size), order="F")
        subtract_outer_products(pattern, values, S, threads)
        results.append(S)
    np.testing.assert_allclose(np.tril(results[0]), -np.tril(dense @ dense.T), atol=1e-12)
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


@pytest.mark.parametrize("k1", [1, 2])
def test_coupled_rows_match_dense_product(k1) -> None:
    rng = np.random.default_rng(10 + k1)
    size = 30
    pattern, w = _random_pattern(rng, k1, 12, size)
    root = rng.normal(size=(size, size))
    X = np.asfortranarray(root @ root.T)
    lower = np.asfortranarray(np.tril(X))
    mirror_lower(lower)
    assert np.array_equal(lower, X)
    dense = _dense_coupling(pattern, w, size)
    product = X @ dense  # column block l of X W restricted to the rows of level l's entries
    levels = np.searchsorted(np.unique(pattern.level_start), pattern.level_start)
    expected = np.concatenate([product[row, level * k1 : (level + 1) * k1] for row, level in zip(pattern.rows, levels)])
    for threads in (1, 2):
        np.testing.assert_allclose(coupled_rows(pattern, w, X, threads), expected, rtol=1e-12, atol=1e-12)


def _grouped_pattern(rng: np.random.Generator, k1: int, width: int, levels: int, groups: int):
    """A pattern whose columns come in groups of ``width`` that each level touches whole."""
    size = groups * width
    rows = []
    for _ in range(levels):
        chosen = np.sort(rng.choice(groups, rng.integers(1, groups // 2 + 1), replace=False))
        rows.append((chosen[:, None] * width + np.arange(width)[None, :]).ravel())
    entry_ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    group_ptr = np.arange(0, size + 1, width)
    pattern = UpdatePattern.build(k1, entry_ptr, np.concatenate(rows), size, group_ptr)
    return pattern, rng.normal(size=int(entry_ptr[-1]) * k1), size


@pytest.mark.parametrize("k1, width", [(1, 2), (2, 2), (2, 3), (3, 2)])
def test_grouped_kernels_match_dense_products_for_any_thread_count(k1, width) -> None:
    rng = np.random.default_rng(100 * k1 + width)
    pattern, values, size = _grouped_pattern(rng, k1, width, 15, 12)
    dense = _dense_coupling(pattern, values, size)
    updates = []
    for threads in (1, 2):
        S = np.zeros((size, size), order="F")
        subtract_outer_products(pattern, values, S, threads)
        updates.append(S)
    np.testing.assert_allclose(np.tril(updates[0]), -np.tril(dense @ dense.T), atol=1e-12)
    assert np.array_equal(updates[0], updates[1])
    root = rng.normal(size=(size, size))
    X = np.asfortranarray(root @ root.T)
    product = X @ dense
    levels = np.searchsorted(np.unique(pattern.level_start), pattern.level_start)
    expected = np.concatenate([product[row, level * k1 : (level + 1) * k1] for row, level in zip(pattern.rows, levels)])
    for threads in (1, 2):
        np.testing.assert_allclose(coupled_rows(pattern, values, X, threads), expected, rtol=1e-12, atol=1e-12)


def test_a_level_that_touches_part_of_a_column_group_is_refused() -> None:
    with pytest.raises(ValueError, match="column group partly"):
        UpdatePattern.build(1, np.array([0, 1]), np.array([0]), 2, np.array([0, 2]))


@pytest.mark.parametrize("k1", [1, 3])
def test_dense_coupling_matches_the_sparse_kernels(k1) -> None:
    rng = np.random.default_rng(20 + k1)
    size = 30
    pattern, values = _random_pattern(rng, k1, 12, size)
    levels = np.searchsorted(np.unique(pattern.level_start), pattern.level_start)
    n_levels = int(levels.max()) + 1
    coupling = DenseCoupling(pattern, levels, n_levels, values)
    dense = _dense_coupling(pattern, values, size)
    # stored as the transpose, level by level
    np.testing.assert_array_equal(coupling.cross.reshape(n_levels * k1, size).T, dense)
    coupling.L21t = coupling.cross.copy()
    root = rng.normal(size=(size, size))
    start = np.asfortranarray(root @ root.T)
    sparse, blas = start.copy(order="F"), start.copy(order="F")
    subtract_outer_products(pattern, values, sparse)
    coupling.subtract_outer_products(blas)
    np.testing.assert_allclose(np.tril(blas), np.tril(sparse), rtol=1e-12, atol=1e-12)
    X = np.asfortranarray(start)
    w = rng.normal(size=values.shape)
    w_dense = DenseCoupling(pattern, levels, n_levels, w).cross
    y_dense = coupling.coupled(w_dense, X)
    np.testing.assert_allclose(
        y_dense.reshape(n_levels * k1, size).T, X @ _dense_coupling(pattern, w, size), rtol=1e-12
    )
    # at the entries, the sparse kernel's Y
    at_entries = np.concatenate([y_dense[level, :, row] for row, level in zip(pattern.rows, levels)])
    np.testing.assert_allclose(at_entries, coupled_rows(pattern, w, X), rtol=1e-12, atol=1e-12)


def test_dense_coupling_elimination_matches_dense_algebra() -> None:
    # L21' = L11⁻¹ T₁' Z₁'Z₂ Λ₂ level by level, with a lower-triangular Λ₂ of bandwidth 2
    rng = np.random.default_rng(5)
    k1, n_levels, size = 2, 3, 4
    pattern = UpdatePattern.build(k1, np.arange(0, 13, 4), np.tile(np.arange(size), n_levels), size)
    values = rng.normal(size=n_levels * size * k1)
    coupling = DenseCoupling(pattern, np.repeat(np.arange(n_levels), size), n_levels, values)
    template = np.array([[1.5, 0.0], [-0.4, 0.7]])
    lam2 = np.diag(rng.uniform(0.5, 2.0, size)) + np.diag(rng.normal(size=size - 1), -1)
    band = np.vstack([np.diag(lam2), np.append(np.diag(lam2, -1), 0.0)])
    L11 = np.array([np.linalg.cholesky(a @ a.T + np.eye(k1)) for a in rng.normal(size=(n_levels, k1, k1))])
    coupling.eliminate(L11, template, band)
    for level in range(n_levels):
        expected = np.linalg.solve(L11[level], template.T @ coupling.cross[level] @ lam2)
        np.testing.assert_allclose(coupling.L21t[level], expected, rtol=1e-12)


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


def test_canonical_theta_leaves_the_objective_unchanged() -> None:
    model = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    mirrored = np.array([-0.9, 0.2, -0.3])
    canonical = model.layout.canonical(mirrored)
    assert canonical.tolist() == [0.9, -0.2, 0.3]
    assert model.objective(canonical) == pytest.approx(model.objective(mirrored), rel=1e-13)
