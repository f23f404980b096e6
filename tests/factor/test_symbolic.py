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


def test_a_budget_that_holds_the_factor_but_not_the_gradients_copies_takes_no_gradients() -> None:
    """Where the gradient's working copies would exceed the memory budget and the factor alone
    would not, the fit takes no gradients (BOBYQA) instead of being refused; below the
    factor's own need it is refused."""
    rng = np.random.default_rng(4)
    students = np.repeat(np.arange(900), 3)
    teachers = (students // 30) * 5 + rng.integers(0, 5, len(students))
    y = rng.normal(size=len(students)) + rng.normal(size=900)[students] + rng.normal(size=teachers.max() + 1)[teachers]
    data = {"y": y, "s": students.astype(str), "t": teachers.astype(str)}
    formula = "y ~ 1 + (1 | s) + (1 | t)"
    with_gradients = prepare(formula, data, factorization="cholmod").objective.factor
    assert with_gradients.gradient_cost <= 6
    within = with_gradients.estimated_bytes - 1
    without_gradients = prepare(formula, data, factorization="cholmod", memory_budget=within).objective.factor
    assert without_gradients.gradient_cost == np.inf
    assert without_gradients.estimated_bytes < within
    fit = lmmfast.lmm(formula, data, factorization="cholmod", memory_budget=within, checks={"singular": "ignore"})
    assert fit.optsummary.algorithm == "NLOPT_LN_BOBYQA"
    with pytest.raises(lmmfast.MemoryBudgetError):
        lmmfast.lmm(formula, data, factorization="cholmod", memory_budget=without_gradients.estimated_bytes - 1)
