"""The scalar-terms solver against dense algebra, and PIRLS's Newton points through it
against the factorisation paths."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.crossprod import form_cross_products
from lmmfast.design.random import RandomTerm
from lmmfast.factor.scalar_terms import ScalarTermsSolver
from lmmfast.generalized.family import Family
from lmmfast.generalized.prepare import prepare_glmm
from lmmfast.parameters import ThetaLayout


def _design(rng: np.random.Generator, levels: list[int], n: int, p: int, *, every_pair: bool):
    """Scalar terms (the first an intercept, the others random slopes) on ``levels`` levels;
    with ``every_pair``, every level of the first factor meets every level of the others."""
    if every_pair:
        grid = np.stack(np.meshgrid(*[np.arange(m) for m in levels], indexing="ij"), axis=-1).reshape(-1, len(levels))
        codes = np.repeat(grid, 2, axis=0)
    else:
        codes = np.column_stack([rng.integers(0, m, n) for m in levels])
        codes[: max(levels)] = np.arange(max(levels))[:, None] % np.array(levels)  # every level occurs
    rows = len(codes)
    terms = [
        RandomTerm(
            f"g{t}",
            ("(Intercept)",) if t == 0 else ("x",),
            np.array([f"{t}-{j}" for j in range(m)], dtype=object),
            codes[:, t].astype(np.int64),
            np.ones((rows, 1)) if t == 0 else rng.normal(size=(rows, 1)),
        )
        for t, m in enumerate(levels)
    ]
    X = np.column_stack([np.ones(rows), rng.normal(size=(rows, p - 1))]) if p else np.empty((rows, 0))
    return terms, X, rng.normal(size=rows), rng.uniform(0.2, 2.0, rows)


def _dense_solution(terms, X, y, weights, scales):
    """û, β̂, log|Λ'Z'WZΛ + I| and (R_X'R_X)⁻¹ by dense algebra."""
    Z = np.hstack([np.eye(t.n_levels)[t.codes] * t.values for t in terms])
    ZL = Z * np.repeat(scales, [t.n_levels for t in terms])
    M = ZL.T @ (weights[:, None] * ZL) + np.eye(Z.shape[1])
    ZWX, ZWy = ZL.T @ (weights[:, None] * X), ZL.T @ (weights * y)
    XWX, XWy = X.T @ (weights[:, None] * X), X.T @ (weights * y)
    p = X.shape[1]
    system = np.block([[M, ZWX], [ZWX.T, XWX]])
    solution = np.linalg.solve(system, np.concatenate([ZWy, XWy]))
    schur = XWX - ZWX.T @ np.linalg.solve(M, ZWX)
    rx_inverse = np.linalg.inv(schur) if p else np.zeros((0, 0))
    return solution[: Z.shape[1]], solution[Z.shape[1] :], np.linalg.slogdet(M)[1], rx_inverse


@pytest.mark.parametrize(
    ("levels", "p", "every_pair"),
    [([12, 5], 3, True), ([40, 9, 6], 4, False), ([15, 4], 0, True), ([20], 2, True)],
    ids=["dense-coupling", "sparse-coupling", "no-fixed-effects", "one-term"],
)
def test_the_solver_gives_the_dense_solution(levels, p, every_pair) -> None:
    rng = np.random.default_rng(len(levels) * 10 + p)
    terms, X, y, weights = _design(rng, levels, 300, p, every_pair=every_pair)
    cp = form_cross_products(terms, X, y, weights)
    layout = ThetaLayout.from_sizes([1] * len(terms))
    solver = ScalarTermsSolver.of(cp, layout)
    assert solver is not None
    assert solver.fully_coupled == every_pair
    theta = rng.uniform(0.3, 1.5, len(terms)) * np.where(np.arange(len(terms)) % 2, -1.0, 1.0)  # a sign flipped
    u, beta, logdet, rx_inverse = solver.solve(theta, cp)
    expected = _dense_solution(terms, X, y, weights, theta)
    np.testing.assert_allclose(u, expected[0], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(beta, expected[1], rtol=1e-9, atol=1e-11)
    assert logdet == pytest.approx(expected[2], rel=1e-11)
    np.testing.assert_allclose(rx_inverse, expected[3], rtol=1e-9, atol=1e-12)


def test_collinear_fixed_effects_raise() -> None:
    rng = np.random.default_rng(3)
    terms, X, y, weights = _design(rng, [10, 4], 200, 2, every_pair=True)
    X = np.column_stack([X, 2.0 * X[:, 1]])
    cp = form_cross_products(terms, X, y, weights)
    solver = ScalarTermsSolver.of(cp, ThetaLayout.from_sizes([1, 1]))
    assert solver is not None
    with pytest.raises(np.linalg.LinAlgError, match="fixed-effects block"):
        solver.solve(np.array([0.8, 0.5]), cp)


def test_no_solver_for_vector_terms_or_large_systems(monkeypatch) -> None:
    rng = np.random.default_rng(4)
    terms, X, y, weights = _design(rng, [30, 6], 300, 2, every_pair=False)
    vector = RandomTerm("g", ("(Intercept)", "x"), terms[0].levels, terms[0].codes, np.ones((len(y), 2)))
    assert ScalarTermsSolver.of(form_cross_products([vector], X, y), ThetaLayout.from_sizes([2])) is None
    cp = form_cross_products(terms, X, y, weights)
    monkeypatch.setattr("lmmfast.factor.scalar_terms.MAX_WORK", 10)
    assert ScalarTermsSolver.of(cp, ThetaLayout.from_sizes([1, 1])) is None


@pytest.mark.parametrize(
    ("data", "formula", "family"),
    [
        (lmmfast.datasets.load("verbagg"), "r2 ~ Anger + Gender + btype + (1 | id) + (1 | item)", "binomial"),
        # each subject sees 8 of 40 items: a sparse coupling
        (
            lmmfast.datasets.simulate_crossed(60, 40, 8, family="poisson", seed=2),
            "y ~ cond + (1 | subj) + (1 | item)",
            "poisson",
        ),
    ],
    ids=["verbagg", "sparse"],
)
def test_pirls_through_the_solver_finds_the_factor_paths_modes(data, formula, family) -> None:
    model = prepare_glmm(formula, data, Family(family), nagq=0)
    compiled = model.deviance.fresh().pirls
    general = model.deviance.fresh().pirls
    assert compiled._scalar_solver is not None
    general._scalar_solver = None
    theta = np.array([1.1, 0.6])
    beta = np.zeros(compiled.X.shape[1])
    ours, theirs = compiled.solve(theta, beta, free_beta=True), general.solve(theta, beta, free_beta=True)
    assert ours.laplace == pytest.approx(theirs.laplace, rel=1e-12)
    np.testing.assert_allclose(ours.u, theirs.u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.beta, theirs.beta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.rx_inverse, theirs.rx_inverse, rtol=1e-8)
    # the factor catches up when read: at the last Newton point, as the factor path leaves it
    assert compiled.factor.logdet() == pytest.approx(ours.logdet_L, rel=1e-12)
    assert compiled.factor.logdet() == pytest.approx(general.factor.logdet(), rel=1e-12)
    # with β fixed (the Laplace deviance's PIRLS over u alone), û and log|L|² alike
    beta = ours.beta + 0.05
    ours, theirs = compiled.solve(theta, beta, free_beta=False), general.solve(theta, beta, free_beta=False)
    assert ours.laplace == pytest.approx(theirs.laplace, rel=1e-12)
    np.testing.assert_allclose(ours.u, theirs.u, rtol=1e-8, atol=1e-10)
    assert ours.rx_inverse is None and theirs.rx_inverse is None
    assert compiled.factor.logdet() == pytest.approx(ours.logdet_L, rel=1e-12)
