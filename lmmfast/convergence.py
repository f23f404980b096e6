"""Is the optimum an optimum? A check on the objective's own (deviance) scale.

lme4 tests the absolute gradient, which grows with n and raises false alarms on large data;
here the test is the decrease a Newton step would still achieve, in deviance units, from
central differences after BOBYQA or from L-BFGS-B's own gradient and curvature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lmmfast.control import Control
from lmmfast.parameters import ThetaLayout


@dataclass(frozen=True)
class ConvergenceCheck:
    """Finite-difference check of the optimum, on the objective's own (deviance) scale.

    lme4 tests the absolute gradient, which grows with n and raises false alarms on large
    data. Here the criterion is the decrease a Newton step would still achieve,
    ``Σ gᵢ² / (2 Hᵢᵢ)`` over the free coordinates (diagonal curvature from the same central
    differences), in deviance units — its meaning does not change with n. Coordinates on
    the boundary (a template diagonal at 0) only need a non-negative one-sided slope.

    After L-BFGS-B the check needs no evaluation: the analytic gradient g and L-BFGS-B's
    inverse-Hessian approximation H⁻¹ at the optimum give the decrease ½ g'H⁻¹g.

    Attributes
    ----------
    gradient, curvature : numpy.ndarray
        First and second derivatives per θ: central differences, or the analytic gradient
        and NaN curvature after L-BFGS-B (NaN where not computed).
    free : numpy.ndarray
        Mask of θ entries off the boundary.
    predicted_decrease : float
    ok : bool
    message : str
        Empty when ``ok``.
    n_evals : int
    """

    gradient: np.ndarray
    curvature: np.ndarray
    free: np.ndarray
    predicted_decrease: float
    ok: bool
    message: str
    n_evals: int


#: Finite-difference steps are this fraction of |θᵢ| (at least this absolute).
DIFFERENCE_STEP = 1e-4


def _step(value: float) -> float:
    return DIFFERENCE_STEP * max(1.0, abs(value))


def _check_quasi_newton(
    objective: Callable[[np.ndarray], float],
    theta: np.ndarray,
    value: float,
    free: np.ndarray,
    gradient: np.ndarray,
    inverse_hessian: np.ndarray,
    tolerance: float,
) -> ConvergenceCheck:
    gradient = np.asarray(gradient, dtype=np.float64)
    problems: list[str] = []
    if np.all(free):
        decrease = 0.5 * float(gradient @ inverse_hessian @ gradient)
    else:
        # the Newton step over the free θ only: their block of the Hessian, not of its inverse
        hessian = np.linalg.pinv(inverse_hessian, hermitian=True)[np.ix_(free, free)]
        decrease = 0.5 * float(gradient[free] @ np.linalg.lstsq(hessian, gradient[free], rcond=None)[0])
    evals = 0
    for i in np.flatnonzero(~free):
        step = _step(theta[i])
        up = theta.copy()
        up[i] += step
        evals += 1
        if (objective(up) - value) / step < -tolerance / step:
            problems.append(f"θ[{i}] sits on the boundary although the objective falls away from it")
    if not 0.0 <= decrease <= tolerance:
        problems.append(f"a quasi-Newton step would still lower the objective by {decrease:.2g}")
    return ConvergenceCheck(
        gradient=gradient,
        curvature=np.full(len(theta), np.nan),
        free=free,
        predicted_decrease=decrease,
        ok=not problems,
        message="; ".join(problems),
        n_evals=evals,
    )


def check_convergence(
    objective: Callable[[np.ndarray], float],
    layout: ThetaLayout,
    theta: np.ndarray,
    value: float,
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None,
    tolerance: float = Control().convergence_tolerance,
) -> ConvergenceCheck:
    """Check the optimum by central differences (2 evaluations per θ) or, when
    ``quasi_newton`` = (analytic gradient, inverse-Hessian approximation) at ``theta`` is
    given, by the Newton decrease over the θ off the boundary, ½ g'H⁻¹g, with no evaluation
    but one forward difference per θ on the boundary. The optimum fails the check when a
    Newton step would still lower the objective by more than ``tolerance``
    (:attr:`lmmfast.control.Control.convergence_tolerance`).

    Examples
    --------
    >>> from lmmfast.parameters import ThetaLayout
    >>> check = check_convergence(lambda t: (t[0] - 1.0) ** 2, ThetaLayout.from_sizes([1]), np.array([1.0]), 0.0)
    >>> check.ok
    True
    """
    theta = np.asarray(theta, dtype=np.float64)
    m = len(theta)
    free = ~(layout.is_diagonal & (theta == 0.0))
    if quasi_newton is not None:
        return _check_quasi_newton(objective, theta, value, free, *quasi_newton, tolerance)
    gradient = np.full(m, np.nan)
    curvature = np.full(m, np.nan)
    evals = 0
    problems: list[str] = []
    decrease = 0.0
    for i in range(m):
        step = _step(theta[i])
        up = theta.copy()
        up[i] += step
        f_up = objective(up)
        evals += 1
        if not free[i]:
            gradient[i] = (f_up - value) / step
            if gradient[i] < -tolerance / step:
                problems.append(f"θ[{i}] sits on the boundary although the objective falls away from it")
            continue
        down = theta.copy()
        down[i] -= step
        f_down = objective(down)
        evals += 1
        gradient[i] = (f_up - f_down) / (2 * step)
        curvature[i] = (f_up - 2 * value + f_down) / step**2
        if curvature[i] > 0:
            decrease += gradient[i] ** 2 / (2 * curvature[i])
        elif min(f_up, f_down) < value - tolerance:
            problems.append(f"the objective still falls along θ[{i}]")
    if decrease > tolerance:
        problems.append(f"a Newton step would still lower the objective by {decrease:.2g}")
    return ConvergenceCheck(
        gradient=gradient,
        curvature=curvature,
        free=free,
        predicted_decrease=float(decrease),
        ok=not problems,
        message="; ".join(problems),
        n_evals=evals,
    )
