"""Choosing a path and refusing models that would not fit in memory."""

from __future__ import annotations

import pytest

import lmmfast
from lmmfast.api import prepare
from lmmfast.factor.choose import blocked_bytes, make_factor

INSTEVAL = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"


@pytest.fixture(scope="module")
def insteval():
    return lmmfast.datasets.load("insteval")


def test_estimate_of_the_blocked_path_is_its_dense_blocks_and_the_stored_products(insteval) -> None:
    cp = prepare(INSTEVAL, insteval, reml=False).objective.cross_products
    assert blocked_bytes(cp) == 3 * 1142 * 1142 * 8 + 8 * len(cp.block_values)


def test_forced_path_over_budget_is_refused_with_the_need(insteval) -> None:
    with pytest.raises(lmmfast.MemoryBudgetError, match=r"needs about 30\.\d MiB \(blocked path.*1142 × 1142"):
        lmmfast.lmm(INSTEVAL, insteval, reml=False, factorization="blocked", memory_budget=5e6)


def test_auto_falls_back_to_cholmod_when_only_the_dense_block_is_too_big(insteval) -> None:
    prepared = prepare(INSTEVAL, insteval, reml=False, memory_budget=15e6)
    assert type(prepared.objective.factor).__name__ == "CholmodFactor"


def test_auto_refuses_when_no_path_fits(insteval) -> None:
    with pytest.raises(lmmfast.MemoryBudgetError, match="raise memory_budget"):
        lmmfast.lmm(INSTEVAL, insteval, reml=False, memory_budget=1e6)


@pytest.mark.parametrize("budget", [0, -1, "lots", True])
def test_bad_budgets_are_rejected(budget) -> None:
    with pytest.raises(lmmfast.ArgumentError, match="memory_budget must be a positive number"):
        lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"), memory_budget=budget)


def test_make_factor_rejects_unknown_method(insteval) -> None:
    prepared = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    with pytest.raises(lmmfast.ArgumentError, match="factorization must be 'auto', 'blocked' or 'cholmod'"):
        make_factor(prepared.objective.cross_products, prepared.layout, "dense")
