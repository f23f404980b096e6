"""Conditional variances of the random effects, the caterpillar table, variance shares."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import lmmfast

CROSSED = "y ~ cond + (1 + cond | subj) + (1 + cond | item) + (1 | freq_group)"


@pytest.mark.parametrize(
    ("dataset", "formula", "options"),
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", {}),
        # the grouped route and CHOLMOD: from solves
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", {"factorization": "blocked"}),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", {"factorization": "cholmod"}),
        # the selected inverse: dense and sparse coupling, two terms in the dense block, merged terms
        ("crossed", CROSSED, {"coupling": "dense"}),
        ("crossed", CROSSED, {"coupling": "sparse"}),
        ("kb07", "RTtrunc ~ S + (S || subj) + (1 + P | item)", {}),
    ],
)
def test_conditional_covariance_equals_dense_formula(dataset, formula, options) -> None:
    if dataset == "crossed":
        data = lmmfast.datasets.simulate_crossed(40, 30, 12, seed=5)
        data["freq_group"] = (data.freq > 0).map({True: "high", False: "low"})
    else:
        data = lmmfast.datasets.load(dataset)
    fit = lmmfast.lmm(formula, data, control=lmmfast.Control(**options), checks={"singular": "ignore"})
    terms = fit.model.terms
    Z = sp.hstack([t.z_block() for t in terms]).toarray()
    lam_blocks = [np.kron(np.eye(t.n_levels), r.template) for t, r in zip(terms, fit.terms)]
    size = sum(len(b) for b in lam_blocks)
    lam = np.zeros((size, size))
    offset = 0
    for block in lam_blocks:
        lam[offset : offset + len(block), offset : offset + len(block)] = block
        offset += len(block)
    dense = fit.sigma**2 * lam @ np.linalg.inv(lam.T @ Z.T @ Z @ lam + np.eye(size)) @ lam.T
    offset = 0
    for term, result in zip(terms, fit.terms):
        blocks = fit.cond_var[result.name]
        for level in range(term.n_levels):
            rows = slice(offset + level * term.k, offset + (level + 1) * term.k)
            np.testing.assert_allclose(blocks[level], dense[rows, rows], rtol=1e-8, atol=1e-10)
        offset += term.n_levels * term.k


def test_ranef_table_is_tidy() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    table = fit.ranef_table()
    assert list(table.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    assert len(table) == 36 and set(table.term) == {"(Intercept)", "Days"}
    first = table.iloc[0]
    assert first.condval == fit.ranef["Subject"].iloc[0, 0]
    assert first.condsd == pytest.approx(np.sqrt(fit.cond_var["Subject"][0, 0, 0]))


def test_variance_shares_sum_to_one_and_give_the_icc() -> None:
    fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    shares = fit.variance_decomposition()
    assert shares.proportion.sum() == pytest.approx(1.0)
    batch, residual = shares.vcov
    assert shares.proportion[0] == pytest.approx(batch / (batch + residual))
