"""The factor's size before it is computed: column counts against CHOLMOD's own factor, and
the CHOLMOD path's memory estimate and budget."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sksparse.cholmod import analyze

import lmmfast
from lmmfast.api import prepare
from lmmfast.factor.symbolic import factor_column_counts

INSTEVAL = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"


@pytest.mark.parametrize("seed", range(6))
def test_column_counts_are_those_of_cholmods_simplicial_factor(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    pattern = sp.random(n, n, density=float(rng.uniform(0.005, 0.05)), random_state=seed, format="csc")
    matrix = sp.csc_matrix(pattern @ pattern.T + n * sp.eye(n))
    lower = sp.tril(matrix, format="csc")
    lower.sort_indices()
    factor = analyze(lower, mode="simplicial")
    factor.cholesky_inplace(lower)
    L = factor.L()
    counts = factor_column_counts(lower.indptr, lower.indices, factor.P())
    np.testing.assert_array_equal(counts, np.diff(L.indptr))


@pytest.mark.parametrize(
    ("dataset", "formula"),
    [
        ("pastes", "strength ~ 1 + (1 | batch/cask)"),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
        ("kb07", "RTtrunc ~ 1 + S + (1 + S | subj) + (1 + S | item)"),
        ("insteval", INSTEVAL),
    ],
)
def test_the_cholmod_paths_factor_has_the_counted_size(dataset, formula) -> None:
    model = prepare(formula, lmmfast.datasets.load(dataset), factorization="cholmod")
    factor = model.objective.factor
    factor.update(model.objective.layout.start)  # small models evaluate elsewhere: factor it here
    stored = factor._factor.L().nnz  # supernodal factors hold some explicit zeros
    if factor.supernodal:
        # CHOLMOD also merges small supernodes, storing a few more zeros than counted here
        assert factor.factor_nonzeros < stored <= 1.25 * factor._supernodal_storage[0]
    else:
        assert stored == factor.factor_nonzeros
    plan = model.objective.describe()
    assert plan.estimated_bytes == factor.estimated_bytes > 8 * factor.factor_nonzeros
    assert plan.estimated_seconds > 0


def test_a_cholmod_fit_over_budget_is_refused_with_its_factors_size() -> None:
    data = lmmfast.datasets.load("insteval")
    needed = prepare(INSTEVAL, data, reml=False, factorization="cholmod").objective.factor.estimated_bytes
    refusal = r"cholmod path; its sparse Cholesky factor has 590,304 non-zeros"
    with pytest.raises(lmmfast.MemoryBudgetError, match=refusal):
        lmmfast.lmm(INSTEVAL, data, reml=False, factorization="cholmod", memory_budget=needed - 1)
    fit = lmmfast.lmm(INSTEVAL, data, reml=False, factorization="cholmod", memory_budget=needed)
    assert fit.engine.estimated_bytes == needed
