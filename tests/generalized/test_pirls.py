"""PIRLS: a repeated question answered from the last solve, and only while its state holds."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.generalized.family import Family
from lmmfast.generalized.prepare import prepare_glmm


def _pirls():
    model = prepare_glmm(
        "prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), Family("binomial"), weights="size"
    )
    return model.deviance.fresh().pirls


def test_the_same_question_returns_the_last_solve_without_iterating() -> None:
    pirls = _pirls()
    p = pirls.X.shape[1]
    theta, beta = np.array([0.6]), np.zeros(p)
    first = pirls.solve(theta, beta, free_beta=True)
    # β's start does not matter where β is free
    assert pirls.solve(theta.copy(), np.ones(p), free_beta=True) is first
    fixed = pirls.solve(theta, first.beta, free_beta=False)
    assert fixed is not first
    assert pirls.solve(theta, first.beta, free_beta=False) is fixed
    assert pirls.solve(theta, first.beta + 0.1, free_beta=False) is not fixed


def test_a_fresh_copy_shares_the_rows_constants_and_nothing_it_writes() -> None:
    pirls = _pirls()
    theta, beta = np.array([0.6]), np.zeros(pirls.X.shape[1])
    first = pirls.solve(theta, beta, free_beta=True)
    mu = pirls.buffers.mu.copy()
    twin = pirls.fresh()
    assert twin.saturated is pirls.saturated and twin.loglik_offset == pirls.loglik_offset
    assert twin.buffers is not pirls.buffers and twin.factor is not pirls.factor
    assert twin.last_u is None  # it starts from u = 0, not from the original's modes
    again = twin.solve(np.array([1.2]), beta, free_beta=True)
    np.testing.assert_array_equal(pirls.buffers.mu, mu)  # the original's rows are untouched
    assert pirls.solve(theta, beta, free_beta=True) is first
    assert twin.solve(theta, beta, free_beta=True).laplace == pytest.approx(first.laplace, rel=1e-9)
    assert again.laplace != first.laplace


def test_a_pass_over_the_rows_in_between_forgets_the_last_solve() -> None:
    pirls = _pirls()
    theta, beta = np.array([0.6]), np.zeros(pirls.X.shape[1])
    first = pirls.solve(theta, beta, free_beta=True)
    pirls.evaluate_rows(np.zeros(len(pirls.response.y)))
    again = pirls.solve(theta, beta, free_beta=True)
    assert again is not first
    # solved again from the last modes, it is the same solution to PIRLS's tolerance
    assert abs(again.laplace - first.laplace) < 1e-9 * first.laplace
    np.testing.assert_allclose(pirls.buffers.mu, 1 / (1 + np.exp(-pirls.buffers.eta)), rtol=1e-12)


def test_a_small_whole_newton_step_over_u_and_beta_ends_pirls_at_the_confirmed_modes(monkeypatch) -> None:
    """Over (u, β) a whole Newton step below NEWTON_TOLERANCE ends PIRLS one iteration before
    the step below STEP_TOLERANCE that would confirm it; both reach the same modes. Over u
    alone the confirming iteration stays."""
    import lmmfast.generalized.pirls as pirls_module

    theta = np.array([0.6])
    warm = np.array([0.5999])  # near enough that the second whole step is below NEWTON_TOLERANCE

    def solved(tolerance: float, free_beta: bool):
        monkeypatch.setattr(pirls_module, "NEWTON_TOLERANCE", tolerance)
        pirls = _pirls()
        beta = pirls.solve(theta, np.zeros(pirls.X.shape[1]), free_beta=True).beta
        start = pirls.solve(warm, beta, free_beta=free_beta)
        return pirls.solve(theta, beta, free_beta=free_beta, u=start.u)

    sooner, confirmed = solved(pirls_module.NEWTON_TOLERANCE, True), solved(0.0, True)
    assert sooner.iterations == confirmed.iterations - 1
    assert abs(sooner.laplace - confirmed.laplace) < 1e-10 * confirmed.laplace
    np.testing.assert_allclose(sooner.beta, confirmed.beta, rtol=1e-9)
    np.testing.assert_allclose(sooner.u, confirmed.u, rtol=1e-9, atol=1e-12)
    assert solved(pirls_module.NEWTON_TOLERANCE, False).iterations == solved(0.0, False).iterations
