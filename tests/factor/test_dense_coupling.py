"""The dense coupling (L21 held dense, BLAS for every product) against the sparse kernels and dense algebra."""

from __future__ import annotations

import numpy as np
import pytest
from coupling_patterns import dense_coupling, random_pattern

from lmmfast.factor.dense_coupling import DenseCoupling
from lmmfast.factor.inverse_blocks import coupled_rows
from lmmfast.factor.rank_update import UpdatePattern, subtract_outer_products


@pytest.mark.parametrize("k1", [1, 3])
def test_dense_coupling_matches_the_sparse_kernels(k1) -> None:
    rng = np.random.default_rng(20 + k1)
    size = 30
    pattern, values = random_pattern(rng, k1, 12, size)
    levels = np.searchsorted(np.unique(pattern.level_start), pattern.level_start)
    n_levels = int(levels.max()) + 1
    coupling = DenseCoupling(pattern, levels, n_levels, values)
    dense = dense_coupling(pattern, values, size)
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
    np.testing.assert_allclose(y_dense.reshape(n_levels * k1, size).T, X @ dense_coupling(pattern, w, size), rtol=1e-12)
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
