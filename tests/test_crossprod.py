"""Cross-products formed once equal the dense products they stand for."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import lmmfast
from lmmfast.api import prepare
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
