"""The gradient's coupled rows against dense products."""

from __future__ import annotations

import numpy as np
import pytest
from coupling_patterns import dense_coupling, random_pattern

from lmmfast.factor.inverse_blocks import coupled_rows, mirror_lower


@pytest.mark.parametrize("k1", [1, 2])
def test_coupled_rows_match_dense_product(k1) -> None:
    rng = np.random.default_rng(10 + k1)
    size = 30
    pattern, w = random_pattern(rng, k1, 12, size)
    root = rng.normal(size=(size, size))
    X = np.asfortranarray(root @ root.T)
    lower = np.asfortranarray(np.tril(X))
    mirror_lower(lower)
    assert np.array_equal(lower, X)
    dense = dense_coupling(pattern, w, size)
    product = X @ dense  # column block l of X W restricted to the rows of level l's entries
    levels = np.searchsorted(np.unique(pattern.level_start), pattern.level_start)
    expected = np.concatenate([product[row, level * k1 : (level + 1) * k1] for row, level in zip(pattern.rows, levels)])
    for threads in (1, 2):
        np.testing.assert_allclose(coupled_rows(pattern, w, X, threads), expected, rtol=1e-12, atol=1e-12)
