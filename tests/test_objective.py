"""The profiled objective equals the textbook likelihood, for ML, REML and prior weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dense_reference import dense_objective

import lmmfast
from lmmfast.api import prepare
from lmmfast.objective import INFEASIBLE

MODELS = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    ("sleepstudy_weighted", "Reaction ~ Days + (Days || Subject)", "w"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    ("pastes", "strength ~ 1 + (1 | batch/cask)", None),
    ("machines", "score ~ Machine + (0 + Machine | Worker)", None),
]


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize(("dataset", "formula", "weights"), MODELS, ids=[m[0] + ":" + m[1] for m in MODELS])
def test_profiled_objective_equals_dense_likelihood(dataset, formula, weights, reml) -> None:
    prepared = prepare(formula, lmmfast.datasets.load(dataset), reml=reml, weights=weights)
    rng = np.random.default_rng(7)
    for _ in range(3):
        theta = prepared.layout.start + 0.4 * rng.normal(size=prepared.layout.size)
        theta = np.where(prepared.layout.is_diagonal, np.abs(theta), theta)
        assert prepared.objective(theta) == pytest.approx(dense_objective(prepared, theta), rel=1e-10)


def test_objective_is_finite_on_the_boundary() -> None:
    prepared = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff2"))
    assert np.isfinite(prepared.objective(np.array([0.0])))


def test_solution_matches_generalised_least_squares() -> None:
    prepared = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"), reml=False)
    theta = np.array([0.9, 0.02, 0.23])
    solution = prepared.objective.solve(theta)
    import scipy.sparse as sp

    Z = sp.hstack([t.z_block() for t in prepared.terms]).toarray()
    lam = np.kron(np.eye(18), prepared.layout.template(theta, 0))
    V = Z @ lam @ lam.T @ Z.T + np.eye(len(Z))
    X, y = prepared.fixed.X, prepared.fixed.y
    Vinv = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vinv @ X, X.T @ Vinv @ y)
    np.testing.assert_allclose(solution.beta, beta, rtol=1e-10)
    # conditional modes: b = ΛΛ'Z'V⁻¹(y − Xβ)
    np.testing.assert_allclose(solution.b, lam @ lam.T @ Z.T @ Vinv @ (y - X @ beta), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(solution.beta_covariance, solution.sigma**2 * np.linalg.inv(X.T @ Vinv @ X), rtol=1e-8)


def test_a_block_that_rounding_leaves_indefinite_is_infeasible_not_an_exception() -> None:
    # the same term twice merges into one 2 × 2 term with a rank-1 cross-product block, so at
    # huge θ the second pivot of its Cholesky factor is lost to cancellation
    data = pd.DataFrame(
        {
            "y": [2.04, -2.55, 0.41, -0.56, -0.45, 1.2],
            "x": [-0.2, -2.0, -0.23, -0.86, 3.3, 1.1],
            "g": [1, 0, 0, 0, 2, 2],
        }
    )
    model = prepare("y ~ 1 + (0 + x | g) + (0 + x | g)", data, reml=False)
    assert model.objective(np.array([1e9, 1e9])) == INFEASIBLE
    value, gradient = model.objective.value_and_gradient(np.array([1e9, 1e9]))
    assert value == INFEASIBLE and not np.any(gradient)
    assert np.isfinite(model.objective(np.array([1.0, 1.0])))


def test_copies_for_new_responses_keep_the_gradients_log_determinant_part(monkeypatch) -> None:
    """log|M|'s gradient depends on θ and Z'Z, not on the response: a copy of the objective
    for another response reuses the sums formed at the last θ (the costly part of a gradient)
    and gives the value and gradient it would have formed itself, to the bit."""
    from lmmfast.prepare import with_response

    prepared = prepare("RTtrunc ~ S + P + C + (1 | subj) + (1 + P | item)", lmmfast.datasets.load("kb07"), reml=False)
    assert prepared.objective.envelope is None
    theta = np.array([0.3, 0.2, 0.05, 0.1])
    prepared.objective.value_and_gradient(theta)
    y = 2.0 * prepared.fixed.y + 50.0
    expected = with_response(prepared, y).objective
    expected._known_logdet_sums = None
    value, gradient = expected.value_and_gradient(theta)
    copy = with_response(prepared, y).objective

    def not_again(theta: np.ndarray) -> list[np.ndarray]:
        raise AssertionError("the log-determinant sums were formed again")

    monkeypatch.setattr(copy.factor, "logdet_gradient_sums", not_again)
    again = copy.value_and_gradient(theta)
    assert again[0] == value and np.array_equal(again[1], gradient)
    with pytest.raises(AssertionError, match="formed again"):
        copy.value_and_gradient(theta * 1.01)


@pytest.mark.parametrize(
    ("formula", "coupling"),
    [
        ("RTtrunc ~ S + P + C + (1 | subj) + (1 + P | item)", "dense"),
        ("RTtrunc ~ S + P + C + (1 | subj) + (1 + P | item)", "sparse"),
        ("RTtrunc ~ S + P + C + (1 | subj) + (1 | item)", "grouped"),
    ],
)
def test_copies_for_new_responses_start_factored_where_the_model_was(monkeypatch, formula, coupling) -> None:
    """A copy for a new response starts with the factor's numbers at the θ the model's own
    factor was last updated at, on every route of the blocked path, so a refit's first
    evaluation there factors nothing; the numbers are the copy's own: updating it elsewhere
    leaves the model's untouched."""
    from lmmfast.factor import blocked
    from lmmfast.prepare import with_response

    control = lmmfast.Control(factorization="blocked", coupling=coupling)
    prepared = prepare(formula, lmmfast.datasets.load("kb07"), reml=False, control=control)
    assert prepared.objective.factor._route.name == coupling
    theta = np.array([0.3, 0.2, 0.05, 0.1])[: prepared.layout.size]
    source = prepared.objective.factor
    source.update(theta)
    before = np.tril(source._L22), source._L21.copy()  # the factor: the work array's upper triangle is not
    y = 2.0 * prepared.fixed.y + 50.0
    expected = with_response(prepared, y).objective
    expected.factor._theta = None  # as a copy that was not factored
    value = expected(theta)
    copy = with_response(prepared, y).objective

    def not_again(*args: object) -> int:
        raise AssertionError("factored again")

    monkeypatch.setattr(blocked, "_eliminate_first_term", not_again)
    assert copy(theta) == value
    monkeypatch.undo()
    copy(1.1 * theta)
    assert np.array_equal(np.tril(source._L22), before[0]) and np.array_equal(source._L21, before[1])
