"""The CHOLMOD path: a correct factor for every θ, really refreshed at each update."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import lmmfast
from lmmfast.api import prepare


@pytest.fixture(scope="module")
def prepared():
    model = prepare(
        "Reaction ~ Days + (Days | Subject) + (1 | Days)", lmmfast.datasets.load("sleepstudy"), factorization="cholmod"
    )
    assert model.objective.describe().path == "cholmod"
    return model


def _dense_system(prepared, theta):
    Z = sp.hstack([t.z_block() for t in prepared.terms]).toarray()
    lam_blocks = [np.kron(np.eye(t.n_levels), prepared.layout.template(theta, i)) for i, t in enumerate(prepared.terms)]
    size = sum(b.shape[0] for b in lam_blocks)
    lam = np.zeros((size, size))
    offset = 0
    for block in lam_blocks:
        lam[offset : offset + len(block), offset : offset + len(block)] = block
        offset += len(block)
    return lam.T @ Z.T @ Z @ lam + np.eye(size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logdet_and_solves_match_dense_algebra(prepared, seed) -> None:
    rng = np.random.default_rng(seed)
    theta = np.abs(rng.normal(size=prepared.layout.size)) + 0.1
    factor = prepared.objective.factor
    factor.update(theta)
    M = _dense_system(prepared, theta)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(M)[1], rel=1e-12)
    rhs = rng.normal(size=(M.shape[0], 2))
    # L⁻¹P then P'L'⁻¹ solves M x = rhs
    np.testing.assert_allclose(factor.solve_Lt(factor.solve_L(rhs)), np.linalg.solve(M, rhs), rtol=1e-9, atol=1e-12)


def test_factor_is_refreshed_not_reused(prepared) -> None:
    """scikit-sparse's ``cholesky`` returns a new factor; only ``cholesky_inplace`` refreshes it."""
    factor = prepared.objective.factor
    factor.update(np.array([1.0, 0.0, 1.0, 1.0]))
    first = factor.logdet()
    factor.update(np.array([2.0, 0.5, 0.3, 0.1]))
    second = factor.logdet()
    assert first != second
    assert second == pytest.approx(np.linalg.slogdet(_dense_system(prepared, np.array([2.0, 0.5, 0.3, 0.1])))[1])


def test_a_fresh_copy_is_not_analysed_again(prepared, monkeypatch) -> None:
    import lmmfast.factor.cholmod as cholmod

    calls = []
    monkeypatch.setattr(cholmod, "analyze", lambda *a, **k: calls.append(1))
    twin = prepared.objective.factor.fresh()
    assert calls == []
    twin.update(np.array([1.0, 0.2, 0.5, 0.3]))
    assert twin.logdet() == pytest.approx(np.linalg.slogdet(_dense_system(prepared, np.array([1.0, 0.2, 0.5, 0.3])))[1])


def test_the_inverse_is_read_at_positions_found_once_per_pattern(prepared) -> None:
    factor = prepared.objective.factor.fresh()
    for theta in (np.array([1.0, 0.2, 0.5, 0.3]), np.array([0.7, -0.1, 0.4, 0.9])):
        factor.update(theta)
        found = factor._slot_positions
        inverse = np.linalg.inv(_dense_system(prepared, theta))
        at_slots = factor.inverse_on_pattern()
        cp = prepared.objective.cross_products
        for s in range(len(cp.slot_term_a)):  # every stored block of Z'Z, against the dense inverse
            ka, kb = cp.term_sizes[cp.slot_term_a[s]], cp.term_sizes[cp.slot_term_b[s]]
            row = cp.column_offsets[cp.slot_term_a[s]] + cp.slot_level_a[s] * ka
            col = cp.column_offsets[cp.slot_term_b[s]] + cp.slot_level_b[s] * kb
            block = at_slots[cp.slot_offsets[s] : cp.slot_offsets[s] + ka * kb].reshape(ka, kb)
            np.testing.assert_allclose(block, inverse[row : row + ka, col : col + kb], rtol=1e-9, atol=1e-12)
        if found is not None:
            assert factor._slot_positions is found  # the second θ reuses the first's positions
    assert factor._slot_positions is not None


def test_positions_are_found_again_for_another_pattern(prepared) -> None:
    """The positions are kept with L's column pointers and a checksum of its rows, not the
    rows themselves: a pattern whose checksum differs has its positions found again."""
    factor = prepared.objective.factor.fresh()
    theta = np.array([1.0, 0.2, 0.5, 0.3])
    factor.update(theta)
    expected = factor.inverse_on_pattern()
    indptr, checksum, positions = factor._slot_positions
    assert isinstance(checksum, int)
    factor._slot_positions = (indptr, checksum + 1, np.zeros_like(positions))  # as if another pattern's
    np.testing.assert_array_equal(factor.inverse_on_pattern(), expected)
    assert factor._slot_positions[1] == checksum
