"""L-BFGS-B runs for the optimiser (:mod:`lmmfast.optimize`): SciPy's L-BFGS-B on the
analytic gradient, on θ scaled by the criterion's curvature (the start's diagonal, or the
Hessian at the optimum that bootstrap replicates start from; else a first step sized by one
probe), and NLopt's L-BFGS on a compiled criterion the same way; its relative tolerance kept
above the objective's rounding,
and further runs from its last point while a quasi-Newton step would still gain more than
:func:`settled_decrease` (the convergence check's measure).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nlopt
import numpy as np

from lmmfast.control import Control
from lmmfast.convergence import check_convergence
from lmmfast.objective import INFEASIBLE
from lmmfast.parameters import ThetaLayout
from lmmfast.recorder import OBJECTIVE_ROUNDING, Recorder

#: L-BFGS-B stops when an iteration lowers the objective by less than this fraction of it
#: (or by lme4's absolute tolerance, whichever is larger: only objectives above 10,000 are
#: affected). It stays ten times above the rounding level (``OBJECTIVE_ROUNDING``), where the
#: last iterations would only sample noise; a coarser fraction is, on the largest criteria
#: (a deviance of 1e9 from 100M rows), coarser than the convergence check's tolerance itself.
RELATIVE_FTOL_FLOOR = 1e-12


#: The probe for L-BFGS-B's first step goes this far down the gradient, relative to the
#: start's largest |θ| (taken as at least ``FIRST_STEP_MIN_SCALE``).
FIRST_STEP_PROBE = 0.1
FIRST_STEP_MIN_SCALE = 0.1

#: L-BFGS-B's first step is kept within these lengths.
FIRST_STEP_RANGE = (1e-3, 1.0)

#: The squared per-θ scales from a curvature (1/c) are kept within these: below 1, as the
#: probe's step is, and above a curvature of 1e12 (about 1e11 rows per level).
CURVATURE_STEP_RANGE = (1e-12, 1.0)

#: The first step's length in θ scaled by its curvature is kept within these.
NEWTON_LENGTH_RANGE = (1e-3, 1e3)

#: L-BFGS-B also stops when its projected gradient (in θ) falls below this.
PROJECTED_GRADIENT_TOLERANCE = 1e-6

#: Corrections L-BFGS-B keeps for its inverse-Hessian approximation.
LBFGSB_MEMORY = 20

#: Evaluations L-BFGS-B's run takes before its own: the start and the first-step probe.
LBFGSB_SETUP_EVALUATIONS = 2


def _first_step_length(recorder: Recorder, x0: np.ndarray, value: float, gradient: np.ndarray) -> float:
    """How far L-BFGS-B's first step should go down the gradient from ``x0``: the minimum of
    the parabola through the start (its value and slope) and one probe point, clipped to
    ``FIRST_STEP_RANGE``; 1 where the parabola has no minimum.

    L-BFGS-B has no curvature at its first step and takes it with length 1 in θ. From a
    moment start near the optimum that overshoots by far (InstEval: from θ ≈ (0.24, 0.42,
    0.1) to 1.2 in θ₁ and 4,600 deviance units up), and the step that recovers is
    another evaluation. The probe costs one evaluation without gradient (about half of one
    with) and is recorded like any other; the short runs of large designs save about one
    evaluation by it, and long runs reach the same optimum by a slightly different path.
    """
    norm = math.sqrt(float(gradient @ gradient))
    if not (np.isfinite(norm) and norm > 0.0):
        return 1.0
    probe = FIRST_STEP_PROBE * max(float(np.max(np.abs(x0))), FIRST_STEP_MIN_SCALE)
    probe_value = recorder(x0 - (probe / norm) * gradient, np.empty(0))
    curvature = 2.0 * (probe_value - value + probe * norm) / probe**2
    if not (np.isfinite(curvature) and curvature > 0.0):
        return 1.0
    return min(max(norm / curvature, FIRST_STEP_RANGE[0]), FIRST_STEP_RANGE[1])


def _newton_length(scaled_gradient: np.ndarray) -> float:
    """The length of the Newton step where the curvature is the identity: the gradient's,
    kept within ``NEWTON_LENGTH_RANGE``.

    Examples
    --------
    >>> _newton_length(np.array([3.0, 4.0])), _newton_length(np.zeros(2))
    (5.0, 0.001)
    """
    norm = math.sqrt(float(scaled_gradient @ scaled_gradient))
    if not np.isfinite(norm):
        return 1.0
    return min(max(norm, NEWTON_LENGTH_RANGE[0]), NEWTON_LENGTH_RANGE[1])


@dataclass(frozen=True)
class _QuasiNewtonResult:
    """What :func:`_lbfgsb` found, in θ's own coordinates."""

    x: np.ndarray
    value: float
    gradient: np.ndarray
    inverse_hessian: np.ndarray
    success: bool
    message: str


def _lbfgsb(
    recorder: Recorder,
    x0: np.ndarray,
    *,
    ftol_abs: float,
    maxeval: int,
    scale: float,
    root: np.ndarray | None = None,
) -> _QuasiNewtonResult:
    # Unbounded: the objective is even in every template column, so a negative diagonal is as
    # good as its mirror image (ThetaLayout.canonical maps it back). With lme4's bound at 0
    # instead, a scalar term's variance that reaches 0 would stay there, as the objective's
    # slope at 0 is exactly 0 whether 0 is its minimum or not.
    from scipy.optimize import minimize  # here: scipy.optimize costs a new process 0.1 s to import

    value, gradient = recorder.with_gradient(x0)
    # L-BFGS-B works on φ with θ = T φ, where its first step (down the gradient, of length 1)
    # is T's columns long in θ. Given a square root of the inverse curvature (``root``, from
    # :func:`curvature_root`), θ = root φ has unit curvature in every direction, where the
    # Newton step is the gradient itself: T is that root scaled by the gradient's length on
    # top, so that the first step is the Newton step. Else one probe sizes a single step; the
    # quasi-Newton updates make the scale irrelevant after the first step, but start from a
    # problem of even scales
    if root is None:
        scaling = _Scaling(_first_step_length(recorder, x0, value, gradient))
    else:
        unit = _Scaling(root)
        scaling = _Scaling(root * _newton_length(unit.phi_gradient(gradient)))
    phi0 = scaling.phi(x0)

    def to_theta(phi: np.ndarray) -> np.ndarray:
        return x0 if np.array_equal(phi, phi0) else scaling.theta(phi)  # the start exactly, as recorded

    def in_phi(phi: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = recorder.with_gradient(to_theta(phi))
        return value, scaling.phi_gradient(gradient)

    settled = False

    def stop_when_settled(phi: np.ndarray) -> None:
        # at each new iterate: where the curvature says a Newton step would gain far less than
        # the settled decrease, a line search from there would sample rounding
        nonlocal settled
        known = recorder.last_with_gradient()
        if root is None or known is None or not np.array_equal(known[0], to_theta(phi)):
            return
        if 0.5 * float(np.sum(unit.phi_gradient(known[2]) ** 2)) <= curvature_stop(known[1]):
            settled = True
            raise StopIteration

    result = minimize(
        in_phi,
        phi0,
        jac=True,
        method="L-BFGS-B",
        callback=stop_when_settled,
        # SciPy's ftol is relative to the objective: convert lme4's absolute tolerance; gtol
        # applies to φ's gradient, T' times θ's, so it is scaled by T's shortest direction
        options={
            "ftol": max(ftol_abs / max(1.0, abs(scale)), RELATIVE_FTOL_FLOOR),
            "gtol": PROJECTED_GRADIENT_TOLERANCE * scaling.shortest(),
            "maxcor": LBFGSB_MEMORY,
            "maxfun": max(1, maxeval),
            "maxiter": max(1, maxeval),
        },
    )
    return _QuasiNewtonResult(
        # where L-BFGS-B stopped at a point answered for by one evaluated next to it, that one
        x=recorder.evaluated_point(to_theta(result.x)).copy(),
        value=float(result.fun),
        gradient=scaling.theta_gradient(result.jac),
        inverse_hessian=scaling.theta_inverse_hessian(result.hess_inv.todense()),
        success=bool(result.success) or settled,
        message=(
            "CONVERGENCE: A NEWTON STEP ON THE SCALING CURVATURE WOULD GAIN UNDER "
            f"{curvature_stop(float(result.fun)):.1e}"
            if settled
            else str(result.message)
        ),
    )


@dataclass(frozen=True)
class _Scaling:
    """The coordinates φ a quasi-Newton run works in: θ = T φ for a ``transform`` T that is a
    number or a vector (entry by entry: a diagonal, kept a vector, as a matrix product costs
    a microsecond, as much as a small model's evaluation) or a matrix.

    Examples
    --------
    >>> scaling = _Scaling(np.array([[2.0, 0.0], [1.0, 1.0]]))
    >>> scaling.theta(scaling.phi(np.array([3.0, 4.0]))).tolist(), scaling.phi_gradient(np.ones(2)).tolist()
    ([3.0, 4.0], [3.0, 1.0])
    >>> _Scaling(np.array([0.5, 2.0])).shortest(), _Scaling(np.diag([0.5, 2.0])).shortest()
    (0.5, 0.5)
    """

    transform: float | np.ndarray
    _is_matrix: bool = field(init=False)

    def __post_init__(self) -> None:
        # read on every evaluation of a compiled criterion: worked out once
        object.__setattr__(self, "_is_matrix", np.ndim(self.transform) == 2)

    def theta(self, phi: np.ndarray) -> np.ndarray:
        return self.transform @ phi if self._is_matrix else phi * self.transform

    def phi(self, theta: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.transform, theta) if self._is_matrix else theta / self.transform

    def phi_gradient(self, gradient: np.ndarray) -> np.ndarray:
        """φ's gradient from θ's: T' g."""
        return np.transpose(self.transform) @ gradient if self._is_matrix else gradient * self.transform

    def phi_gradient_into(self, gradient: np.ndarray) -> None:
        """T' g, written over g."""
        if self._is_matrix:
            gradient[:] = np.transpose(self.transform) @ gradient
        else:
            gradient *= self.transform

    def theta_gradient(self, gradient: np.ndarray) -> np.ndarray:
        """θ's gradient from φ's."""
        return np.linalg.solve(np.transpose(self.transform), gradient) if self._is_matrix else gradient / self.transform

    def theta_inverse_hessian(self, inverse: np.ndarray) -> np.ndarray:
        """θ's inverse Hessian from φ's: T H⁻¹ T'."""
        if self._is_matrix:
            return self.transform @ inverse @ np.transpose(self.transform)
        scales = np.broadcast_to(self.transform, inverse.shape[:1])
        return inverse * np.outer(scales, scales)

    def shortest(self) -> float:
        """The shortest θ step of a unit φ step (T's smallest singular value)."""
        if self._is_matrix:
            return float(np.linalg.svd(self.transform, compute_uv=False)[-1])
        return float(np.min(np.abs(self.transform)))


#: A failed line search ends L-BFGS-B's run as converged when a quasi-Newton step from its
#: last point would lower the objective by no more than this: the gradient is then at its
#: own rounding level (the 100k-row crossed intercepts on two BLAS threads: 0.006, a
#: decrease of 1.2e-7, and BOBYQA took 50 more evaluations to find nothing lower).
SETTLED_DECREASE = 1e-6

#: On large criteria the floor of what counts as settled is this many times the objective's
#: own rounding (``OBJECTIVE_ROUNDING`` of its size): a decrease promised at a few times the
#: rounding is within the noise of the gradient and curvature that promise it, and another
#: run of L-BFGS-B (a probe or first step and a line search) finds nothing for it.
SETTLED_ROUNDINGS = 10.0


def settled_decrease(value: float) -> float:
    """The predicted decrease below which a quasi-Newton run at objective ``value`` is
    settled: ``SETTLED_DECREASE``, or ``SETTLED_ROUNDINGS`` times the objective's rounding
    where that is larger (deviances above 1e6).

    Examples
    --------
    >>> settled_decrease(1743.6), settled_decrease(1.1e7)
    (1e-06, 1.1e-05)
    """
    return max(SETTLED_DECREASE, SETTLED_ROUNDINGS * OBJECTIVE_ROUNDING * abs(value))


#: L-BFGS-B on θ scaled by a curvature stops at an iterate where that curvature's Newton step,
#: ½ g'C⁻¹g, would gain less than this share of :func:`settled_decrease`, the margin for a
#: curvature that is an approximation (the start's diagonal is within 10% of the Hessian's on
#: the designs the tests measure, but leaves out its off-diagonal entries; a nearby optimum's
#: Hessian is not a replicate's): a line search from such a point samples only the
#: objective's rounding, an evaluation at a time.
CURVATURE_MARGIN = 0.01


def curvature_stop(value: float) -> float:
    """The predicted decrease (½ g'C⁻¹g on the scaling curvature C) at which L-BFGS-B on a
    scaled θ stops at objective ``value``: ``CURVATURE_MARGIN`` of :func:`settled_decrease`,
    or the objective's own rounding where that is larger (deviances above 1e5): a step
    promising less than the rounding cannot be told from it (a deviance of 6.8e6 rounds at
    about 7e-7, and a line search for a promised 5e-7 there samples noise).

    Examples
    --------
    >>> curvature_stop(1743.6), float(f"{curvature_stop(6.8e6):.3g}")
    (1e-08, 6.8e-07)
    """
    return max(CURVATURE_MARGIN * settled_decrease(value), OBJECTIVE_ROUNDING * abs(value))


#: Runs of L-BFGS-B after its first, while a step would still gain over :func:`settled_decrease`.
LBFGSB_RESTARTS = 4


def _predicted_decrease(result: _QuasiNewtonResult) -> float:
    """½ g'H⁻¹g at L-BFGS-B's last point: what a quasi-Newton step would still gain, in the
    objective's own (deviance) units; infinite where the curvature is unusable."""
    decrease = 0.5 * float(result.gradient @ result.inverse_hessian @ result.gradient)
    return decrease if np.isfinite(decrease) and decrease >= 0.0 else np.inf


def _lbfgsb_settled(
    recorder: Recorder, x0: np.ndarray, *, ftol_abs: float, maxeval: int, scale: float, root: np.ndarray | None
) -> _QuasiNewtonResult:
    """L-BFGS-B, run again from its last point while a quasi-Newton step would still gain
    more than :func:`settled_decrease` (the convergence check's measure): its relative tolerance
    (``RELATIVE_FTOL_FLOOR``) alone can stop short of the optimum on large criteria."""
    result = _lbfgsb(recorder, x0, ftol_abs=ftol_abs, maxeval=maxeval, scale=scale, root=root)
    for _ in range(LBFGSB_RESTARTS):
        remaining = maxeval - recorder.count
        if not result.success or remaining <= 0 or _settled(result):
            break
        again = _lbfgsb(recorder, result.x, ftol_abs=ftol_abs, maxeval=remaining, scale=scale, root=root)
        if not again.value < result.value:
            break
        result = again
    return result


def _settled(result: _QuasiNewtonResult) -> bool:
    """Whether L-BFGS-B's last point leaves nothing to gain: a quasi-Newton step would lower
    the objective by no more than :func:`settled_decrease`.

    Examples
    --------
    >>> def stopped(gradient):
    ...     return _QuasiNewtonResult(np.zeros(1), 0.0, np.array([gradient]), np.eye(1), False, "ABNORMAL: ")
    >>> _settled(stopped(1e-4)), _settled(stopped(1.0))
    (True, False)
    """
    return _predicted_decrease(result) <= settled_decrease(result.value)


def run_lbfgsb(
    recorder: Recorder,
    x0: np.ndarray,
    initial_value: float,
    control: Control,
    canonical: Callable[[np.ndarray], np.ndarray],
    root: np.ndarray | None = None,
) -> tuple[str, bool, tuple[np.ndarray, np.ndarray] | None]:
    """L-BFGS-B from ``x0`` (unbounded: ``canonical`` maps its point into the bounds, the
    objective being even in each template column), run again while a step would still gain
    (:func:`_lbfgsb_settled`), on θ = ``root`` φ (:func:`curvature_root`) where given,
    else scaled by one probe. Returns (return code, converged, the gradient and inverse
    Hessian at the optimum where L-BFGS-B ended there); the recorder's best point is the
    optimum, in canonical coordinates."""
    ftol_abs = control.ftol_abs
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None
    result = _lbfgsb_settled(
        recorder,
        x0,
        ftol_abs=ftol_abs,
        maxeval=control.max_evaluations - LBFGSB_SETUP_EVALUATIONS,
        scale=initial_value,
        root=root,
    )
    return_code, converged = result.message, result.success
    if not converged and _settled(result):
        converged = True
        return_code = (
            f"{result.message} (settled: a quasi-Newton step would lower the objective by less than "
            f"{settled_decrease(result.value):g})"
        )
    assert recorder.best_x is not None
    if converged and result.value <= recorder.best_f + ftol_abs:
        # L-BFGS-B's own last point, where its gradient and curvature are, when an earlier
        # point is lower by no more than lme4's absolute tolerance (rounding, mostly):
        # the convergence check then needs no evaluations
        recorder.best_x, recorder.best_f = result.x.copy(), result.value
    if converged and np.array_equal(result.x, recorder.best_x):
        quasi_newton = canonical_quasi_newton(canonical, recorder.best_x, result.gradient, result.inverse_hessian)
    recorder.best_x = canonical(recorder.best_x)
    return return_code, converged, quasi_newton


def canonical_quasi_newton(
    canonical: Callable[[np.ndarray], np.ndarray], x: np.ndarray, gradient: np.ndarray, inverse_hessian: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The gradient and inverse Hessian at ``x`` as they are at the same point in canonical
    coordinates (``canonical(x)``): the entries that it flips change sign.

    Examples
    --------
    >>> g, H = canonical_quasi_newton(np.abs, np.array([-2.0, 1.0]), np.ones(2), np.ones((2, 2)))
    >>> g.tolist(), H.tolist()
    ([-1.0, 1.0], [[1.0, -1.0], [-1.0, 1.0]])
    """
    signs = np.where(canonical(x) == x, 1.0, -1.0)
    return signs * gradient, signs[:, None] * inverse_hessian * signs[None, :]


#: NLopt's return codes by name, for the optimisers' records.
NLOPT_RESULT_NAMES = {
    nlopt.SUCCESS: "SUCCESS",
    nlopt.STOPVAL_REACHED: "STOPVAL_REACHED",
    nlopt.FTOL_REACHED: "FTOL_REACHED",
    nlopt.XTOL_REACHED: "XTOL_REACHED",
    nlopt.MAXEVAL_REACHED: "MAXEVAL_REACHED",
    nlopt.MAXTIME_REACHED: "MAXTIME_REACHED",
}

#: Corrections NLopt's L-BFGS keeps: set, because its default heuristic costs more than a
#: small model's whole run.
NLOPT_LBFGS_MEMORY = 10


#: NLopt's L-BFGS is stopped after this many evaluations in a row that move the best value by
#: no more than rounding (down by at most lme4's absolute tolerance, up by at most
#: ``SETTLED_DECREASE``): its line search is then sampling the objective's rounding, as it
#: does at an optimum on the boundary (a variance at 0) or a flat one, where it would
#: otherwise go on for some fifteen evaluations and then report a failure. Steps that
#: overshoot by more reset the count: they are the line search at work.
STALLED_EVALUATIONS = 5


def curvature_root(curvature: np.ndarray | None) -> np.ndarray | None:
    """A square root R of the inverse of the objective's curvature near a quasi-Newton run's
    start (R R' = C⁻¹), for the run to work on φ with θ = R φ, where the curvature is the
    identity: its unit first step is then C's Newton step, and its quasi-Newton updates start
    from a problem of even scales.

    ``curvature`` is either a diagonal (a vector: the convergence check's central differences
    at the fit a refit starts from, or :func:`lmmfast.curvature.start_curvature`), whose root
    is a vector too (R's diagonal) and whose entries not measured (NaN or not positive: a θ on
    the boundary) take the others' geometric mean, or a whole Hessian (a matrix:
    :func:`lmmfast.curvature.measured_curvature`), whose symmetric root is taken. Either way
    the curvature's entries or eigenvalues c are kept to 1/c within ``CURVATURE_STEP_RANGE``
    (a flat direction of the Hessian then takes unit steps). None where nothing was measured.

    Examples
    --------
    >>> curvature_root(np.array([4.0, np.nan, 1e6])).round(4).tolist()
    [0.5, 0.0224, 0.001]
    >>> root = curvature_root(np.array([[2.0, 1.0], [1.0, 2.0]]))
    >>> bool(np.allclose(root @ root.T, np.linalg.inv([[2.0, 1.0], [1.0, 2.0]])))
    True
    >>> curvature_root(np.array([np.nan])) is None
    True
    """
    if curvature is None:
        return None
    curvature = np.asarray(curvature, dtype=np.float64)
    if curvature.ndim == 2:
        if not np.all(np.isfinite(curvature)):
            return curvature_root(np.diagonal(curvature))
        values, vectors = np.linalg.eigh(0.5 * (curvature + curvature.T))
        inverse = np.clip(1.0 / np.maximum(values, 0.0), *CURVATURE_STEP_RANGE)
        return (vectors * np.sqrt(inverse)) @ vectors.T
    measured = np.isfinite(curvature) & (curvature > 0.0)
    if not measured.any():
        return None
    steps = np.clip(1.0 / np.where(measured, curvature, 1.0), *CURVATURE_STEP_RANGE)
    steps[~measured] = np.exp(np.mean(np.log(steps[measured])))
    return np.sqrt(steps)


def run_nlopt_lbfgs(
    recorder: Recorder,
    x0: np.ndarray,
    control: Control,
    layout: ThetaLayout,
    gradient_into: Callable[[np.ndarray, np.ndarray], float],
    root: np.ndarray | None = None,
) -> tuple[str, bool]:
    """NLopt's L-BFGS from ``x0`` on a compiled criterion (``gradient_into``: θ, out ↦ value,
    the gradient written into out), unbounded as :func:`run_lbfgsb` (``layout.canonical``
    maps its best point into the bounds). Its callback costs about as much as such an
    evaluation, where SciPy's wrapper costs about ten of them, so each evaluation is one
    call from it into the compiled code, recorded as it goes.

    Where it stalls (``STALLED_EVALUATIONS``) or fails, the best point counts as converged
    when central differences there (:func:`lmmfast.convergence.check_convergence`, 2 per θ)
    say a Newton step would gain at most ``SETTLED_DECREASE``. It keeps no inverse Hessian,
    so the convergence check after the fit takes differences too (cheap here). Returns
    (return code, converged); the recorder's best point is the optimum, in canonical
    coordinates."""
    known = recorder.last_with_gradient()
    assert known is not None and np.array_equal(known[0], x0)
    # NLopt's first step, like L-BFGS-B's, is a unit step down the gradient: in φ = θ / step it
    # is as long as the probe says (the first step from sleepstudy's moment start otherwise
    # overshoots to θ ≈ 50 and takes six evaluations to come back) or, given a ``root`` of the
    # inverse curvature (:func:`curvature_root`), θ = root φ, a unit step where the curvature
    # is one in every direction, which also evens out θ's scales for the quasi-Newton updates
    # (the Newton step's length, which L-BFGS-B takes, saves these small models nothing)
    scaling = _Scaling(_first_step_length(recorder, x0, known[1], known[2]) if root is None else root)
    phi0 = scaling.phi(x0)
    stalled = 0
    started = False

    def objective(phi: np.ndarray, grad: np.ndarray) -> float:
        nonlocal stalled, started
        out = grad if grad.size else np.empty(len(phi))
        if not started:  # NLopt's first call is at the start
            started = True
            out[:] = known[2]
            scaling.phi_gradient_into(out)
            return known[1]
        theta = scaling.theta(phi)
        before = recorder.best_f
        began = time.perf_counter()
        value = gradient_into(theta, out)
        recorder.record(theta, value, time.perf_counter() - began)
        scaling.phi_gradient_into(out)
        # no gain beyond lme4's tolerance, and no loss beyond the settled decrease: rounding
        stalled = stalled + 1 if before - control.ftol_abs <= value <= before + SETTLED_DECREASE else 0
        if stalled >= STALLED_EVALUATIONS:
            opt.force_stop()
        return value

    opt = nlopt.opt(nlopt.LD_LBFGS, len(x0))
    opt.set_min_objective(objective)
    opt.set_vector_storage(NLOPT_LBFGS_MEMORY)
    opt.set_ftol_abs(control.ftol_abs)
    opt.set_ftol_rel(control.ftol_rel)
    # per φ coordinate, the θ it moves: its column of the transform
    transform = scaling.transform
    opt.set_xtol_abs(control.xtol_abs / (np.abs(transform).sum(axis=0) if np.ndim(transform) == 2 else transform))
    opt.set_maxeval(max(1, control.max_evaluations - recorder.count))
    converged = False
    try:
        opt.optimize(phi0)
    except nlopt.ForcedStop:
        return_code = "STALLED"
    except nlopt.RoundoffLimited:
        return_code = "ROUNDOFF_LIMITED"
    except nlopt.runtime_error:  # NLopt's generic failure, a line search that found nothing lower
        return_code = "FAILURE"
    else:
        code = opt.last_optimize_result()
        converged = code in (nlopt.SUCCESS, nlopt.FTOL_REACHED, nlopt.XTOL_REACHED)
        return_code = NLOPT_RESULT_NAMES.get(code, str(code))
    assert recorder.best_x is not None
    recorder.best_x = layout.canonical(recorder.best_x)
    if recorder.best_f >= INFEASIBLE:
        # flat at INFEASIBLE, with no slope to follow, is not an optimum: BOBYQA searches on
        return return_code, False
    if not converged and control.max_evaluations - recorder.count >= 2 * len(x0):
        check = check_convergence(
            lambda theta: recorder(theta, np.empty(0)), layout, recorder.best_x, recorder.best_f, None, SETTLED_DECREASE
        )
        if check.ok:
            converged = True
            return_code += f" (settled: a Newton step would lower the objective by less than {SETTLED_DECREASE:g})"
        recorder.best_x = layout.canonical(recorder.best_x)  # a difference may have found a lower point
    return return_code, converged
