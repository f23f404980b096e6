"""Choosing a path and refusing models that would not fit in memory."""

from __future__ import annotations

import tracemalloc
from functools import partial

import numpy as np
import pytest

import lmmfast
from lmmfast.api import prepare
from lmmfast.factor.choose import blocked_bytes, make_factor

INSTEVAL = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"


@pytest.fixture(scope="module")
def insteval():
    return lmmfast.datasets.load("insteval")


def test_estimate_of_the_blocked_path_counts_its_dense_blocks_and_its_copies_of_the_coupling(insteval) -> None:
    cp = prepare(INSTEVAL, insteval, reml=False).objective.cross_products
    # InstEval: students (2,972) first; lecturers (1,128) and departments (14) in the dense block
    coupling = int(np.count_nonzero((cp.slot_term_b == 0) & (cp.slot_term_a > 0)))
    dense = int(np.count_nonzero(cp.slot_term_b > 0))
    assert coupling == len(cp.slot_term_a) - 2972 - dense  # every stored block: a student's own, a coupling, dense
    expected = 8 * (3 * 1142**2 + 2 * 2972 + 3 * coupling + 5 * coupling + 3 * coupling + 2 * dense + 5 * dense)
    assert blocked_bytes(cp) == expected


def test_forced_path_over_budget_is_refused_with_the_need(insteval) -> None:
    with pytest.raises(
        lmmfast.MemoryBudgetError,
        match=r"needs about 4\d\.\d MiB beyond the data \(\d+\.\d MiB for the design's arrays, the rest to factor it "
        r"on the blocked path; .*1142 × 1142",
    ):
        lmmfast.lmm(INSTEVAL, insteval, reml=False, factorization="blocked", memory_budget=5e6)


QUIET = {"singular": "ignore", "convergence": "ignore"}


def _traced_peak(call) -> tuple[object, int]:
    """``call()``'s result and the peak of the memory it allocated through Python and NumPy."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("family", [None, "binomial"])
def test_the_blocked_paths_estimate_is_within_a_quarter_of_what_the_fit_allocates(family) -> None:
    # 36,000 rows, a 600 × 600 dense block: the design's rows and the block weigh alike
    formula = "y ~ cond + freq + (1 + cond | subj) + (1 | item)"

    def fit_model(*shape: int) -> lmmfast.LmmResult | lmmfast.GlmmResult:
        data = lmmfast.datasets.simulate_crossed(*shape, family=family or "gaussian", seed=4)
        if family is None:
            return lmmfast.lmm(formula, data, checks=QUIET)
        return lmmfast.glmm(formula, data, family, nagq=0, checks=QUIET)

    # the same fit first: compiling or loading the kernels it uses is no part of a fit's memory
    fit_model(300, 600, 120)
    fit, peak = _traced_peak(partial(fit_model, 300, 600, 120))
    estimate = fit.engine.estimated_bytes
    assert fit.engine.path == "blocked"
    assert 0.75 * peak <= estimate <= 1.25 * peak, (estimate, peak)


def test_auto_falls_back_to_cholmod_when_only_the_dense_block_is_too_big(insteval) -> None:
    prepared = prepare(INSTEVAL, insteval, reml=False, memory_budget=30e6)
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
