"""BFGS from a measured Hessian (the refits of bootstrap replicates): its steps, the last one
taken on the value alone where the value agrees with the model, and L-BFGS-B after a failure."""

from __future__ import annotations

import numpy as np
import pytest

from lmmfast import bfgs
from lmmfast.bfgs import run_bfgs
from lmmfast.control import Control
from lmmfast.optimize import optimize_theta
from lmmfast.parameters import ThetaLayout
from lmmfast.recorder import Recorder


def _parabola(x: np.ndarray) -> tuple[float, np.ndarray]:
    """1000 + x², whose settled decrease is 1e-6 and whose stop on the curvature is 1e-8."""
    return 1000.0 + float(x @ x), 2.0 * x


QUADRATIC = np.array([[3.0, 1.0], [1.0, 2.0]])


def _quartic(x: np.ndarray) -> tuple[float, np.ndarray]:
    """10 + x'Ax + x₀⁴: its Hessian is 2A at the minimum (0), with 12x₀² added to its first entry elsewhere."""
    return 10.0 + float(x @ QUADRATIC @ x) + float(x[0] ** 4), 2.0 * QUADRATIC @ x + np.array([4.0 * x[0] ** 3, 0.0])


def _recorder(value_and_gradient) -> Recorder:
    return Recorder(lambda x: value_and_gradient(x)[0], value_and_gradient)


def test_a_last_step_the_value_confirms_needs_no_gradient() -> None:
    # from x = 1e-3 the exact curvature predicts a gain of 1e-6 (under ten settled decreases):
    # the step to 0 is taken on the value, which falls by exactly the predicted gain
    recorder = _recorder(_parabola)
    code, converged, quasi_newton = run_bfgs(recorder, np.array([1e-3]), np.array([[0.5]]), 50, lambda x: x)
    assert converged and "VALUE ALONE" in code and quasi_newton is None
    assert recorder.best_x is not None and abs(recorder.best_x[0]) < 1e-12
    assert recorder.count == 2 and recorder.last_with_gradient()[0].tolist() == [1e-3]


def test_a_last_step_the_value_contradicts_goes_on_with_the_gradient() -> None:
    # half the true inverse curvature: the step to 5e-4 gains 7.5e-7 where 5e-7 was predicted,
    # which leaves 1.25e-7 to gain; the gradient is taken at that same point, BFGS learns the
    # curvature, and the next step ends at the minimum
    recorder = _recorder(_parabola)
    code, converged, _ = run_bfgs(recorder, np.array([1e-3]), np.array([[0.25]]), 50, lambda x: x)
    assert converged and "VALUE ALONE" in code
    points = [float(x[0]) for x, _ in recorder.history]
    assert points[:3] == [1e-3, 5e-4, 5e-4]  # the value first, then its gradient at the same point
    assert recorder.best_x is not None and abs(recorder.best_x[0]) < 1e-12


def test_steps_far_from_the_optimum_take_the_gradient_and_reach_it() -> None:
    recorder = _recorder(_quartic)
    code, converged, _ = run_bfgs(recorder, np.array([1.0, -1.0]), np.linalg.inv(2.0 * QUADRATIC), 50, np.abs)
    assert converged and "VALUE ALONE" in code
    last = recorder.history[-1][0]
    assert np.any(last < 0.0) and np.array_equal(recorder.best_x, np.abs(last))  # in canonical coordinates
    np.testing.assert_allclose(recorder.best_x, 0.0, atol=1e-5)
    assert recorder.count <= 8


def test_a_run_out_of_evaluations_says_so() -> None:
    recorder = _recorder(_quartic)
    code, converged, _ = run_bfgs(recorder, np.array([1.0, -1.0]), np.linalg.inv(2.0 * QUADRATIC), 2, np.abs)
    assert not converged and code == "FAILURE: BFGS REACHED THE EVALUATION LIMIT"
    assert recorder.count == 2  # the start counts: it is one of the two


def test_a_failed_run_is_finished_by_lbfgsb(monkeypatch) -> None:
    def value_and_gradient(theta):
        return float(np.sum((theta - 2.0) ** 2) + np.sum((theta - 2.0) ** 4)), 2.0 * (theta - 2.0) + 4.0 * (
            theta - 2.0
        ) ** 3

    layout = ThetaLayout.from_sizes([1, 1])
    kwargs = {"start": np.array([0.5, 0.5]), "value_and_gradient": value_and_gradient, "curvature": 2.0 * np.eye(2)}
    whole = optimize_theta(lambda t: value_and_gradient(t)[0], layout, **kwargs)
    assert whole.algorithm == "BFGS" and whole.converged
    monkeypatch.setattr(bfgs, "MAX_ITERATIONS", 1)
    finished = optimize_theta(lambda t: value_and_gradient(t)[0], layout, **kwargs)
    assert finished.algorithm == "BFGS+L-BFGS-B" and finished.converged
    np.testing.assert_allclose(finished.final, whole.final, atol=1e-4)
    np.testing.assert_allclose(whole.final, 2.0, atol=1e-4)
    # the evaluation limit holds across both runs
    for limit in (5, 8, 12):
        starved = optimize_theta(
            lambda t: value_and_gradient(t)[0], layout, control=Control(max_evaluations=limit), **kwargs
        )
        assert starved.algorithm.startswith("BFGS+L-BFGS-B") and starved.n_evals <= limit


@pytest.mark.parametrize(
    ("change", "expected"),
    [(0.0, 0.5), (float("nan"), 0.5), (100.0, 0.1), (-0.5, 0.5)],
)
def test_backtracking_stays_between_a_tenth_and_a_half(change, expected) -> None:
    assert bfgs._shorter(1.0, change, 1.0) == pytest.approx(expected)
