"""M⁻¹ on the pattern of a sparse Cholesky factor (Takahashi) against the dense inverse."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sksparse.cholmod import cholesky

import lmmfast
from lmmfast.api import prepare
from lmmfast.factor.selected_inverse import entry_position, selected_inverse


@pytest.mark.parametrize("seed", range(5))
def test_the_selected_inverse_is_the_inverse_on_the_factors_pattern(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 120))
    pattern = sp.random(n, n, density=float(rng.uniform(0.02, 0.1)), random_state=seed, format="csc")
    matrix = sp.csc_matrix(pattern @ pattern.T + sp.eye(n))
    factor = cholesky(matrix, mode="simplicial")
    L = factor.L().tocsc()
    L.sort_indices()
    values = selected_inverse(L.indptr, L.indices, L.data)
    inverse_permutation = np.empty(n, dtype=np.int64)
    inverse_permutation[factor.P()] = np.arange(n)
    dense = np.linalg.inv(matrix.toarray())
    rows, cols = matrix.nonzero()
    got = np.array([values[entry_position(L.indptr, L.indices, inverse_permutation, r, c)] for r, c in zip(rows, cols)])
    np.testing.assert_allclose(got, dense[rows, cols], rtol=1e-9, atol=1e-12)


def test_the_cholmod_paths_conditional_variances_are_the_blocked_paths() -> None:
    data = lmmfast.datasets.load("kb07")
    formula = "RTtrunc ~ 1 + S + (1 + S | subj) + (1 + P | item)"
    fits = [
        lmmfast.lmm(formula, data, factorization=path, checks={"singular": "ignore"}) for path in ("cholmod", "blocked")
    ]
    on_cholmod, on_blocks = (fit.cond_var for fit in fits)
    assert list(on_cholmod) == list(on_blocks)
    for name in on_cholmod:
        np.testing.assert_allclose(on_cholmod[name], on_blocks[name], rtol=1e-6)


def test_a_design_of_short_columns_takes_lbfgsb_on_cholmod_and_its_optimum() -> None:
    rng = np.random.default_rng(4)
    students = np.repeat(np.arange(900), 3)
    teachers = (students // 30) * 5 + rng.integers(0, 5, len(students))
    schools = teachers // 25
    y = rng.normal(size=len(students)) + rng.normal(size=900)[students] + rng.normal(size=teachers.max() + 1)[teachers]
    data = {"y": y, "s": students.astype(str), "t": teachers.astype(str), "c": schools.astype(str)}
    formula = "y ~ 1 + (1 | s) + (1 | t) + (1 | c)"
    model = prepare(formula, data, factorization="cholmod")
    assert not model.objective.factor.supernodal and model.objective.factor.gradient_cost <= 6
    on_cholmod = lmmfast.lmm(formula, data, factorization="cholmod", reml=False, checks={"singular": "ignore"})
    on_blocks = lmmfast.lmm(formula, data, factorization="blocked", reml=False, checks={"singular": "ignore"})
    assert on_cholmod.optsummary.algorithm == "L-BFGS-B"
    assert on_cholmod.objective == pytest.approx(on_blocks.objective, rel=1e-10)


def test_satterthwaite_df_on_the_cholmod_path_are_the_blocked_paths() -> None:
    data = lmmfast.datasets.load("kb07")
    formula = "RTtrunc ~ 1 + S + P + (1 + S | subj) + (1 + P | item)"
    tables = [
        lmmfast.lmm(formula, data, factorization=path, checks={"singular": "ignore"}).coef_table
        for path in ("cholmod", "blocked")
    ]
    np.testing.assert_allclose(tables[0]["df"], tables[1]["df"], rtol=1e-6)


def test_a_refilled_cholmod_factor_multiplies_by_its_new_products() -> None:
    from dataclasses import replace

    model = prepare(
        "diameter ~ 1 + (1 | plate) + (1 | sample)", lmmfast.datasets.load("penicillin"), factorization="cholmod"
    )
    factor = model.objective.factor.fresh()
    cp = model.objective.cross_products
    V = np.ones((cp.q, 1))
    before = factor.zz_times(V)
    factor.refill(replace(cp, block_values=2.0 * cp.block_values))
    np.testing.assert_allclose(factor.zz_times(V), 2.0 * before)


def _crossed_system(rng: np.random.Generator, *, subjects: int, items: int, trials: int, scale: float) -> sp.csc_matrix:
    """scale·Z'Z + I for crossed intercepts: ``trials`` trials a subject, each an item at
    random; its factor ends in a dense block (the items every subject couples)."""
    rows = np.repeat(np.arange(subjects), trials)
    cols = subjects + rng.integers(0, items, len(rows))
    incidence = sp.csc_matrix(
        (np.ones(2 * len(rows)), (np.r_[np.arange(len(rows)), np.arange(len(rows))], np.r_[rows, cols])),
        shape=(len(rows), subjects + items),
    )
    return sp.csc_matrix(scale * (incidence.T @ incidence) + sp.eye(subjects + items))


@pytest.mark.parametrize("tail_min", [1, 32, 10**9])
def test_a_dense_last_block_is_inverted_by_lapack_and_the_rest_by_the_recurrence(tail_min, monkeypatch) -> None:
    """A crossed design's factor ends in a dense block (the items every subject couples):
    inverted by LAPACK (any DENSE_TAIL_MIN up to its size) or by the recurrence throughout,
    M⁻¹ on L's pattern is the dense inverse's."""
    import lmmfast.factor.selected_inverse as selected

    monkeypatch.setattr(selected, "DENSE_TAIL_MIN", tail_min)
    matrix = _crossed_system(np.random.default_rng(7), subjects=300, items=60, trials=4, scale=0.7)
    factor = cholesky(matrix, mode="simplicial")
    L = factor.L().tocsc()
    L.sort_indices()
    counts = np.diff(L.indptr)
    assert np.all(counts[-32:] == np.arange(32, 0, -1))  # the factor ends in a dense block
    values = selected.selected_inverse(L.indptr, L.indices, L.data)
    inverse_permutation = np.empty(matrix.shape[0], dtype=np.int64)
    inverse_permutation[factor.P()] = np.arange(matrix.shape[0])
    dense = np.linalg.inv(matrix.toarray())
    r, c = matrix.nonzero()
    got = np.array([values[entry_position(L.indptr, L.indices, inverse_permutation, i, j)] for i, j in zip(r, c)])
    np.testing.assert_allclose(got, dense[r, c], rtol=1e-9, atol=1e-12)
    # and every entry on L's pattern, not only Z'Z's: L's pattern mapped back to M's order
    perm = factor.P()
    lrows = L.indices
    lcols = np.repeat(np.arange(L.shape[0]), np.diff(L.indptr))
    np.testing.assert_allclose(values, dense[perm[lrows], perm[lcols]], rtol=1e-9, atol=1e-12)


def test_the_dense_blocks_terms_on_threads_give_the_same_inverse_to_the_bit() -> None:
    """The recurrence's terms in the dense block are summed per column by one thread in one
    order, so any number of threads gives the same values."""
    from lmmfast.factor.selected_inverse import dense_tail

    matrix = _crossed_system(np.random.default_rng(3), subjects=400, items=80, trials=5, scale=0.5)
    factor = cholesky(matrix, mode="simplicial")
    L = factor.L().tocsc()
    L.sort_indices()
    assert dense_tail(L.indptr) >= 32
    one = selected_inverse(L.indptr, L.indices, L.data, threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(selected_inverse(L.indptr, L.indices, L.data, threads=threads), one)
    dense = np.linalg.inv(matrix.toarray())
    perm = factor.P()
    lcols = np.repeat(np.arange(L.shape[0]), np.diff(L.indptr))
    np.testing.assert_allclose(one, dense[perm[L.indices], perm[lcols]], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("min_rows", [1, 4, 10**9])
def test_columns_sharing_the_dense_blocks_rows_are_formed_together(min_rows, monkeypatch) -> None:
    """Runs of consecutive columns with the same rows in the dense block (supernodes next to
    it) have their terms there formed by BLAS at once, for any run size allowed, or column
    by column: M⁻¹ on L's pattern is the dense inverse's either way."""
    import lmmfast.factor.selected_inverse as selected

    monkeypatch.setattr(selected, "SUPERNODE_MIN_ROWS", min_rows)
    matrix = _crossed_system(np.random.default_rng(11), subjects=500, items=70, trials=6, scale=0.6)
    factor = cholesky(matrix, mode="simplicial")
    L = factor.L().tocsc()
    L.sort_indices()
    start = L.shape[0] - selected.dense_tail(L.indptr)
    firsts, counts, widths, alone = selected._tail_supernodes(L.indptr, L.indices, start, min_rows)
    if min_rows < 10**9:
        assert len(firsts) > 0 and np.all(counts >= 2) and np.all(widths >= min_rows)
        assert np.count_nonzero(~alone) == counts.sum()
    else:
        assert len(firsts) == 0 and alone.all()
    values = selected.selected_inverse(L.indptr, L.indices, L.data, threads=2)
    dense = np.linalg.inv(matrix.toarray())
    lcols = np.repeat(np.arange(L.shape[0]), np.diff(L.indptr))
    np.testing.assert_allclose(values, dense[factor.P()[L.indices], factor.P()[lcols]], rtol=1e-9, atol=1e-12)
