"""The scattered rank update against dense products, on any number of threads."""

from __future__ import annotations

import numpy as np
import pytest
from coupling_patterns import dense_coupling, grouped_pattern, random_pattern

from lmmfast.factor.inverse_blocks import coupled_rows
from lmmfast.factor.rank_update import UpdatePattern, subtract_outer_products


@pytest.mark.parametrize("k1", [1, 2, 3])
def test_rank_update_matches_dense_product_for_any_thread_count(k1) -> None:
    rng = np.random.default_rng(k1)
    size = 40
    pattern, values = random_pattern(rng, k1, 25, size)
    dense = dense_coupling(pattern, values, size)
    results = []
    for threads in (1, 2, 3):
        S = np.zeros((size, size), order="F")
        subtract_outer_products(pattern, values, S, threads)
        results.append(S)
    np.testing.assert_allclose(np.tril(results[0]), -np.tril(dense @ dense.T), atol=1e-12)
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


def test_a_level_that_touches_part_of_a_column_group_is_refused() -> None:
    with pytest.raises(ValueError, match="column group partly"):
        UpdatePattern.build(1, np.array([0, 1]), np.array([0]), 2, np.array([0, 2]))


@pytest.mark.parametrize("k1, width", [(1, 2), (2, 2), (2, 3), (3, 2)])
def test_grouped_kernels_match_dense_products_for_any_thread_count(k1, width) -> None:
    rng = np.random.default_rng(100 * k1 + width)
    pattern, values, size = grouped_pattern(rng, k1, width, 15, 12)
    dense = dense_coupling(pattern, values, size)
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
