"""BFGS from a measured Hessian, for refits that start at a nearby optimum with its whole
Hessian (bootstrap replicates: :func:`lmmfast.fit.optimum_curvature`).

The run keeps a dense inverse-Hessian approximation B (θ has a handful of entries), starts
it at the measured Hessian's inverse and updates it by BFGS after every step, so that its
first step is that Hessian's Newton step and the later ones learn how the replicate's
curvature differs. Unlike L-BFGS-B, whose limited memory starts every iteration from a
scaled identity, it keeps the measured correlations between θ's entries throughout.

Where B predicts a gain under ``FINAL_STEP_SETTLED_MULTIPLE`` times :func:`settled_decrease`,
the step is first taken on the objective's value alone: a value costs the factorisation,
the gradient the inverse of the factor's dense block on top (on InstEval, twice the
factorisation again). The step's error is the quadratic model's along it: its first-order
part shows in the value, and what it leaves is of second order (:func:`_left_after`).
Where that is under the stop a gradient would apply (:func:`curvature_stop`), the step was
the last one; else the gradient is taken at the same point, without a new factorisation,
and the run goes on. On InstEval's replicates this leaves the last step's gradient out of
five in six of them, and they leave at most 2e-8 to gain (its curvature stop is 2.4e-8).

A run that fails (a line search that finds no decrease, too many iterations) says so, and
the caller carries on with L-BFGS-B from its best point.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lmmfast.lbfgsb import canonical_quasi_newton, curvature_stop, settled_decrease
from lmmfast.recorder import Recorder

#: The last step is taken without a gradient from a point where B predicts a gain under this
#: many times :func:`settled_decrease`.
FINAL_STEP_SETTLED_MULTIPLE = 10.0

#: The line search accepts a step that lowers the value by this share of the gain the
#: gradient predicts for it (Armijo's condition).
SUFFICIENT_DECREASE = 1e-4

#: Trials (each shorter than the last by a half to a tenth) before a line search gives up,
#: and iterations before the run does.
MAX_BACKTRACKS = 12
MAX_ITERATIONS = 50


def run_bfgs(
    recorder: Recorder,
    x0: np.ndarray,
    inverse_hessian: np.ndarray,
    maxeval: int,
    canonical: Callable[[np.ndarray], np.ndarray],
) -> tuple[str, bool, tuple[np.ndarray, np.ndarray] | None]:
    """BFGS from ``x0`` with the initial inverse Hessian ``inverse_hessian`` (symmetric,
    positive definite), unbounded like L-BFGS-B (``canonical`` maps its point into the bounds,
    the objective being even in each template column), for at most ``maxeval`` evaluations.

    Returns (return code, converged, the gradient and inverse Hessian at the optimum where
    the gradient there is known); the recorder's best point is the optimum, in canonical
    coordinates, where converged, and the lowest point seen otherwise.

    Examples
    --------
    >>> from lmmfast.recorder import Recorder
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
    >>> def value_and_gradient(x):
    ...     return 10.0 + float(x @ A @ x) + float(x[0] ** 4), 2.0 * A @ x + np.array([4.0 * x[0] ** 3, 0.0])
    >>> recorder = Recorder(lambda x: value_and_gradient(x)[0], value_and_gradient)
    >>> code, converged, _ = run_bfgs(recorder, np.array([0.5, 0.5]), np.linalg.inv(2.0 * A), 50, lambda x: x)
    >>> converged, bool(np.allclose(recorder.best_x, 0.0, atol=1e-4))
    (True, True)
    """
    start = recorder.count
    x = np.asarray(x0, dtype=np.float64).copy()
    value, gradient = recorder.with_gradient(x)
    B = 0.5 * (inverse_hessian + inverse_hessian.T)
    known: tuple[np.ndarray, np.ndarray] | None = None
    return_code, converged = "FAILURE: BFGS REACHED ITS ITERATION LIMIT", False
    for _ in range(MAX_ITERATIONS):
        direction = -(B @ gradient)
        gain = -0.5 * float(gradient @ direction)
        if not (np.isfinite(gain) and gain >= 0.0):
            return_code = "FAILURE: THE INVERSE HESSIAN LOST ITS POSITIVE DEFINITENESS"
            break
        if gain <= curvature_stop(value):
            return_code = f"CONVERGENCE: A BFGS STEP WOULD GAIN UNDER {curvature_stop(value):.1e}"
            converged, known = True, (gradient, B)
            break
        remaining = maxeval - (recorder.count - start)
        if remaining <= 0:
            return_code = "FAILURE: BFGS REACHED THE EVALUATION LIMIT"
            break
        length = 1.0
        if gain <= FINAL_STEP_SETTLED_MULTIPLE * settled_decrease(value):
            trial = x + direction
            trial_value = recorder(trial, np.empty(0))
            remaining -= 1
            if trial_value <= value and _left_after(gain, value - trial_value) <= curvature_stop(trial_value):
                x, value = trial, trial_value
                return_code = (
                    f"CONVERGENCE: THE LAST STEP, PREDICTED TO GAIN {gain:.1e}, TAKEN ON THE OBJECTIVE'S VALUE ALONE"
                )
                converged = True
                break
            # the value says this was no last step: the line search goes on, from the same point
            # where that lowered the value enough (its gradient then needs no new factorisation)
            sufficient = trial_value <= value - SUFFICIENT_DECREASE * 2.0 * gain
            length = 1.0 if sufficient else _shorter(1.0, trial_value - value, 2.0 * gain)
        step = _line_search(recorder, x, value, direction, 2.0 * gain, length, remaining)
        if step is None:
            if gain <= settled_decrease(value):
                return_code = f"CONVERGENCE: THE LINE SEARCH ENDED WHERE A STEP WOULD GAIN ONLY {gain:.1e}"
                converged, known = True, (gradient, B)
            elif recorder.count - start >= maxeval:
                return_code = "FAILURE: BFGS REACHED THE EVALUATION LIMIT"
            else:
                return_code = "FAILURE: THE LINE SEARCH FOUND NO DECREASE"
            break
        new_x, new_value, new_gradient = step
        B = _bfgs_update(B, new_x - x, new_gradient - gradient)
        x, value, gradient = new_x, new_value, new_gradient
    if converged:
        recorder.best_x, recorder.best_f = x.copy(), value
    assert recorder.best_x is not None
    quasi_newton = None if known is None else canonical_quasi_newton(canonical, recorder.best_x, *known)
    recorder.best_x = canonical(recorder.best_x)
    return return_code, converged, quasi_newton


def _line_search(
    recorder: Recorder,
    x: np.ndarray,
    value: float,
    direction: np.ndarray,
    slope_gain: float,
    length: float,
    maxeval: int,
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """A backtracking line search from ``x`` along ``direction`` (whose full step the
    gradient predicts to lower the value by ``slope_gain``): the first step length, from
    ``length`` down (:func:`_shorter`), that meets Armijo's condition, as (point, value,
    gradient); None where none does within ``MAX_BACKTRACKS`` trials or ``maxeval``
    evaluations."""
    for _ in range(min(MAX_BACKTRACKS, maxeval)):
        trial = x + length * direction
        trial_value, trial_gradient = recorder.with_gradient(trial)
        if np.isfinite(trial_value) and trial_value <= value - SUFFICIENT_DECREASE * length * slope_gain:
            return trial, trial_value, trial_gradient
        length = _shorter(length, trial_value - value, slope_gain)
    return None


def _left_after(gain: float, decrease: float) -> float:
    """What a step predicted to lower the value by ``gain``, and that lowered it by
    ``decrease``, leaves to gain: (decrease/gain − 1)² times ``gain``. The step's error is
    the quadratic model's along it; its first-order part shows in the value, and what it
    leaves is of second order (InstEval's and kb07's replicates: within a factor of 2 of
    ½ g'H⁻¹g at the point reached, where that was above 1e-9).

    Examples
    --------
    >>> _left_after(1e-5, 1e-5), float(f"{_left_after(1e-5, 0.9e-5):.3g}")
    (0.0, 1e-07)
    """
    return (decrease / gain - 1.0) ** 2 * gain


def _shorter(length: float, change: float, slope_gain: float) -> float:
    """The next trial length after one of ``length`` changed the value by ``change``: the
    minimum of the parabola through the start's value, its slope (a full step's predicted
    gain ``slope_gain``) and the trial, kept within a tenth and a half of ``length`` (a half
    where the trial's value is not finite).

    Examples
    --------
    >>> _shorter(1.0, 0.0, 1.0), _shorter(1.0, float("inf"), 1.0), _shorter(1.0, 100.0, 1.0)
    (0.5, 0.5, 0.1)
    """
    rise = change + length * slope_gain
    parabola = 0.5 * slope_gain * length**2 / rise if np.isfinite(rise) and rise > 0.0 else 0.5 * length
    return min(max(parabola, 0.1 * length), 0.5 * length)


def _bfgs_update(B: np.ndarray, step: np.ndarray, change: np.ndarray) -> np.ndarray:
    """B after the BFGS update for the ``step`` s and the gradient's ``change`` y:
    (I − ρsy')B(I − ρys') + ρss', ρ = 1/s'y; B unchanged where s'y is not positive beyond
    rounding (the curvature along the step is not, and the update would lose positive
    definiteness).

    Examples
    --------
    >>> B = _bfgs_update(np.eye(2), np.array([1.0, 0.0]), np.array([2.0, 0.0]))
    >>> (B @ np.array([2.0, 0.0])).tolist()  # the secant condition: B y = s
    [1.0, 0.0]
    """
    curvature = float(step @ change)
    if not (np.isfinite(curvature) and curvature > 1e-12 * np.linalg.norm(step) * np.linalg.norm(change)):
        return B
    rho = 1.0 / curvature
    left = np.eye(len(step)) - rho * np.outer(step, change)
    return left @ B @ left.T + rho * np.outer(step, step)
