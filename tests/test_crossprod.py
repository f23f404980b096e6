"""Cross-products formed once equal the dense products they stand for."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import lmmfast
from lmmfast.api import prepare
from lmmfast.crossprod import RowPattern, form_cross_products, form_weighted_cross_products, pair_pattern
from lmmfast.factor.pattern import build_lower_pattern


def _dense(prepared):
    Z = sp.hstack([t.z_block() for t in prepared.terms]).toarray()
    root = np.sqrt(prepared.weights) if prepared.weights is not None else np.ones(len(Z))
    Xy = np.column_stack([prepared.fixed.X, prepared.fixed.y]) * root[:, None]
    return Z * root[:, None], Xy


def test_blocks_reassemble_to_ztz_zty_xtx() -> None:
    data = lmmfast.datasets.load("sleepstudy_weighted")
    prepared = prepare("Reaction ~ Days + (Days | Subject) + (1 | Days)", data, weights="w")
    cp = prepared.objective.cross_products
    Z, Xy = _dense(prepared)
    pattern = build_lower_pattern(cp)
    lower = np.zeros((cp.q, cp.q))
    kept = pattern.position >= 0
    values = np.zeros(pattern.nnz)
    values[pattern.position[kept]] = cp.block_values[kept]
    matrix = sp.csc_matrix((values, pattern.indices, pattern.indptr), shape=(cp.q, cp.q)).toarray()
    lower = np.tril(Z.T @ Z)
    np.testing.assert_allclose(matrix, lower, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cp.ZtXy, Z.T @ Xy, rtol=1e-12)
    np.testing.assert_allclose(cp.XytXy, Xy.T @ Xy, rtol=1e-12)
    assert cp.sum_log_weights == np.log(data["w"]).sum()


def test_pattern_is_lower_triangular_with_sorted_rows_and_full_diagonal() -> None:
    prepared = prepare("diameter ~ 1 + (1 | plate) + (1 | sample)", lmmfast.datasets.load("penicillin"))
    cp = prepared.objective.cross_products
    pattern = build_lower_pattern(cp)
    columns = np.repeat(np.arange(cp.q), np.diff(pattern.indptr))
    assert np.all(pattern.indices >= columns)
    for j in range(cp.q):
        rows = pattern.indices[pattern.indptr[j] : pattern.indptr[j + 1]]
        assert np.all(np.diff(rows) > 0)
    assert len(pattern.diagonal) == cp.q


@pytest.mark.parametrize(
    ("formula", "rows"),
    [
        ("Reaction ~ Days + (1 | Subject) + (1 | Days)", 180),  # scalar terms: the blocked row pass
        ("Reaction ~ Days + (1 | Subject)", 37),  # fewer rows than one block
        ("Reaction ~ Days + (Days | Subject) + (1 | Days)", 180),  # a vector-valued term
    ],
)
def test_weighted_cross_products_equal_those_formed_with_the_weights(formula, rows) -> None:
    data = lmmfast.datasets.load("sleepstudy").iloc[:rows]
    prepared = prepare(formula, data)
    terms, X, y = prepared.terms, prepared.fixed.X, prepared.fixed.y
    weights = np.random.default_rng(rows).uniform(0.1, 3.0, len(y))
    pairs = pair_pattern(terms)
    expected = form_cross_products(terms, X, y, weights, pairs)
    pattern = RowPattern.of(terms, pairs, expected)
    assert pattern.all_scalar == ("Days |" not in formula)
    got = form_weighted_cross_products(pattern, X, y, np.sqrt(weights))
    np.testing.assert_allclose(got.block_values, expected.block_values, rtol=1e-12)
    np.testing.assert_allclose(got.ZtXy, expected.ZtXy, rtol=1e-12)
    np.testing.assert_allclose(got.XytXy, expected.XytXy, rtol=1e-12)
    np.testing.assert_array_equal(got.XytXy, got.XytXy.T)
