"""Minimise the profiled objective over θ, and record how it went.

Two optimisers: NLopt's BOBYQA (derivative-free, lme4's choice) and, where the analytic
gradient is available, SciPy's L-BFGS-B. :func:`choose_optimizer` picks L-BFGS-B when the
model has many variance parameters, many random effects or an expensive factorisation,
where it needs a fraction of BOBYQA's evaluations (kb07 with 20 θ: 50 evaluations against
930; InstEval: 11 against 83).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import nlopt
import numpy as np

from lmmfast.control import Control
from lmmfast.factor.base import MAX_GRADIENT_COST
from lmmfast.optsummary import OptSummary
from lmmfast.parameters import ThetaLayout

__all__ = ["choose_optimizer", "optimize_bounded", "optimize_theta"]

_RESULT_NAMES = {
    nlopt.SUCCESS: "SUCCESS",
    nlopt.STOPVAL_REACHED: "STOPVAL_REACHED",
    nlopt.FTOL_REACHED: "FTOL_REACHED",
    nlopt.XTOL_REACHED: "XTOL_REACHED",
    nlopt.MAXEVAL_REACHED: "MAXEVAL_REACHED",
    nlopt.MAXTIME_REACHED: "MAXTIME_REACHED",
}


#: L-BFGS-B is chosen automatically from this many θ on ...
GRADIENT_MIN_THETA = 6

#: ... or when the dense block of the blocked factorisation is at least this large (each
#: evaluation is then dominated by the factorisation, which the gradient costs about twice)
GRADIENT_MIN_DENSE = 500

#: ... or the model has at least this many random effects: below, an evaluation costs about
#: what L-BFGS-B's own bookkeeping does and the fit time is the set-up's either way
#: (sleepstudy, penicillin, pastes: 31–36 ms by both); above, fewer evaluations pay (kb07
#: with 4 θ and 120 random effects: 105 evaluations by BOBYQA in 99.6 ms, 10 in 51.9 ms).
GRADIENT_MIN_RANDOM_EFFECTS = 100


def choose_optimizer(
    n_theta: int, has_gradient: bool, dense_size: int, random_effects: int = 0, gradient_cost: float = 3.0
) -> str:
    """``"lbfgsb"`` where the gradient exists and pays for itself, else ``"bobyqa"``.

    Small models are as fast by BOBYQA, lme4's own optimiser: their evaluations cost less
    than the fixed overhead of a gradient. Nor does a gradient that costs more than
    ``MAX_GRADIENT_COST`` evaluations pay: L-BFGS-B needs about a sixth of BOBYQA's
    evaluations.

    Examples
    --------
    >>> choose_optimizer(3, True, 0, 36), choose_optimizer(20, True, 128), choose_optimizer(4, True, 64, 120)
    ('bobyqa', 'lbfgsb', 'lbfgsb')
    >>> choose_optimizer(20, False, 0)
    'bobyqa'
    """
    pays = (
        n_theta >= GRADIENT_MIN_THETA
        or dense_size >= GRADIENT_MIN_DENSE
        or random_effects >= GRADIENT_MIN_RANDOM_EFFECTS
    )
    return "lbfgsb" if has_gradient and pays and gradient_cost <= MAX_GRADIENT_COST else "bobyqa"


class _Recorder:
    """Wraps the objective for the optimisers: counts calls and keeps the best point seen."""

    def __init__(
        self,
        objective: Callable[[np.ndarray], float],
        value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
        on_evaluation: Callable[[np.ndarray, float, float], None] | None = None,
    ) -> None:
        self.on_evaluation = on_evaluation
        self.objective = objective
        self.value_and_gradient = value_and_gradient
        self.count = 0
        self.best_x: np.ndarray | None = None
        self.best_f = np.inf
        self.history: list[tuple[np.ndarray, float]] = []
        self.seconds: list[float] = []
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None
        self._best_with_gradient: tuple[np.ndarray, float, np.ndarray] | None = None
        self._stand_ins: dict[bytes, np.ndarray] = {}

    def _record(self, x: np.ndarray, value: float, seconds: float) -> None:
        self.count += 1
        self.history.append((np.array(x, copy=True), value))
        self.seconds.append(seconds)
        if self.on_evaluation is not None:
            self.on_evaluation(x, value, seconds)
        if value < self.best_f:
            self.best_f = value
            self.best_x = np.array(x, copy=True)

    def __call__(self, x: np.ndarray, grad: np.ndarray) -> float:
        began = time.perf_counter()
        value = float(self.objective(x))
        self._record(x, value, time.perf_counter() - began)
        return value

    def summary(
        self,
        algorithm: str,
        initial: tuple[np.ndarray, float],
        final: tuple[np.ndarray, float],
        began: float,
        outcome: tuple[str, bool, tuple[int, ...]],
        control: Control,
        quasi_newton: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> OptSummary:
        """The record of a run that started at ``initial`` (point, value) at ``began``, ended at
        ``final`` with ``outcome`` (return code, converged, snapped), every evaluation in order."""
        return_code, converged, snapped = outcome
        return OptSummary(
            algorithm=algorithm,
            initial=initial[0],
            final=final[0],
            initial_objective=initial[1],
            final_objective=final[1],
            n_evals=self.count,
            seconds=time.perf_counter() - began,
            return_code=return_code,
            converged=converged,
            snapped=snapped,
            control=control,
            trace_theta=np.array([x for x, _ in self.history]),
            trace_objective=np.array([f for _, f in self.history]),
            trace_seconds=np.array(self.seconds),
            gradient=None if quasi_newton is None else quasi_newton[0],
            inverse_hessian=None if quasi_newton is None else quasi_newton[1],
        )

    def evaluated_point(self, x: np.ndarray) -> np.ndarray:
        """The point whose value and gradient were the answer for ``x`` (``x`` itself if it
        was evaluated)."""
        return self._stand_ins.get(np.asarray(x, dtype=np.float64).tobytes(), x)

    def with_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        assert self.value_and_gradient is not None
        for known in (self._last, self._best_with_gradient):
            if known is not None and _indistinguishable(x, known):
                # L-BFGS-B asks again for its start, or its line search has shrunk its step
                # below what the objective can resolve: the answer is known
                self._stand_ins[np.asarray(x, dtype=np.float64).tobytes()] = known[0]
                return known[1], known[2].copy()
        began = time.perf_counter()
        value, gradient = self.value_and_gradient(x)
        self._record(x, float(value), time.perf_counter() - began)
        self._last = (np.array(x, copy=True), float(value), np.array(gradient, copy=True))
        if self._best_with_gradient is None or value < self._best_with_gradient[1]:
            self._best_with_gradient = self._last
        return float(value), gradient


#: Steps longer than this (relative to θ, or absolute near 0) are always evaluated. InstEval's
#: last step, 1e-7 long, lowered the deviance by 3e-9, under its rounding, yet let L-BFGS-B
#: stop at once; answering it from the known point cost one evaluation more.
MAX_UNRESOLVED_STEP = 1e-9


def _indistinguishable(x: np.ndarray, known: tuple[np.ndarray, float, np.ndarray]) -> bool:
    """Whether the objective at ``x`` cannot be told from its value at the ``known``
    (point, value, gradient): a step of at most ``MAX_UNRESOLVED_STEP`` along which the
    gradient predicts a change below the objective's rounding (``OBJECTIVE_ROUNDING`` of its
    size). L-BFGS-B's line search, once its step has shrunk to such lengths near the
    optimum, only samples rounding noise (100k rows of crossed intercepts: 1e-8 to 4e-8 in
    a deviance of 1.1e6, 20 evaluations per failed search); answering from the known point
    makes the search fail at once, and a failed search never accepts a point.

    Examples
    --------
    >>> known = (np.array([0.5, 0.0]), 1e6, np.array([1e-3, 2e-3]))
    >>> near, far = np.array([0.5 + 5e-10, 5e-10]), np.array([0.5 + 1e-4, 0.0])
    >>> _indistinguishable(near, known), _indistinguishable(far, known)
    (True, False)
    """
    point, value, gradient = known
    step = x - point
    if np.max(np.abs(step), initial=0.0) > MAX_UNRESOLVED_STEP * max(1.0, float(np.max(np.abs(point), initial=0.0))):
        return False
    return bool(abs(float(gradient @ step)) <= OBJECTIVE_ROUNDING * max(1.0, abs(value)))


#: Snapping a template diagonal to 0 is kept when it raises the objective by at most this
#: fraction of it (rounding).
SNAP_ROUNDING = 1e-10


def _snap_to_boundary(
    recorder: _Recorder, snappable: np.ndarray, theta: np.ndarray, value: float, tolerance: float
) -> tuple[np.ndarray, float, tuple[int, ...]]:
    """Set the ``snappable`` parameters (template diagonals) below ``tolerance`` to exactly 0
    when that does not raise the objective (beyond rounding), one at a time from the smallest."""
    snapped: list[int] = []
    candidates = np.flatnonzero(snappable & (theta > 0.0) & (theta < tolerance))
    for index in candidates[np.argsort(theta[candidates])]:
        trial = theta.copy()
        trial[index] = 0.0
        trial_value = recorder(trial, np.empty(0))
        if trial_value <= value + SNAP_ROUNDING * max(1.0, abs(value)):
            theta, value = trial, min(value, trial_value)
            snapped.append(int(index))
    return theta, value, tuple(snapped)


def _bobyqa(
    recorder: _Recorder,
    lower: np.ndarray,
    x0: np.ndarray,
    *,
    ftol_abs: float,
    xtol_abs: float,
    ftol_rel: float,
    maxeval: int,
    initial_step: float | np.ndarray | None,
) -> tuple[str, bool]:
    opt = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
    opt.set_min_objective(recorder)
    opt.set_lower_bounds(lower)
    opt.set_ftol_abs(ftol_abs)
    opt.set_ftol_rel(ftol_rel)
    opt.set_xtol_abs(xtol_abs)
    opt.set_maxeval(max(1, maxeval))
    if initial_step is not None:
        opt.set_initial_step(initial_step)
    try:
        opt.optimize(x0)
    except nlopt.RoundoffLimited:
        # BOBYQA could not make progress below rounding: the best point is as good as it gets.
        return "ROUNDOFF_LIMITED", True
    code = opt.last_optimize_result()
    converged = code in (nlopt.SUCCESS, nlopt.STOPVAL_REACHED, nlopt.FTOL_REACHED, nlopt.XTOL_REACHED)
    return _RESULT_NAMES.get(code, str(code)), converged


#: The objective's own rounding, relative to its size: evaluations at points 1e-7 apart
#: differ by 1e-8 to 4e-8 in a deviance of 1.1e6 (100k rows).
OBJECTIVE_ROUNDING = 1e-13

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

#: L-BFGS-B also stops when its projected gradient (in θ) falls below this.
PROJECTED_GRADIENT_TOLERANCE = 1e-6

#: Corrections L-BFGS-B keeps for its inverse-Hessian approximation.
LBFGSB_MEMORY = 20

#: Evaluations L-BFGS-B's run takes before its own: the start and the first-step probe.
LBFGSB_SETUP_EVALUATIONS = 2


def _bobyqa_model_size(m: int) -> int:
    """Evaluations BOBYQA needs to build its first quadratic model of m variables (2m + 1):
    a run or restart with fewer left would stop before its first step."""
    return 2 * m + 1


def _first_step_length(recorder: _Recorder, x0: np.ndarray, value: float, gradient: np.ndarray) -> float:
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
    norm = float(np.linalg.norm(gradient))
    if not (np.isfinite(norm) and norm > 0.0):
        return 1.0
    probe = FIRST_STEP_PROBE * max(float(np.max(np.abs(x0))), FIRST_STEP_MIN_SCALE)
    probe_value = recorder(x0 - (probe / norm) * gradient, np.empty(0))
    curvature = 2.0 * (probe_value - value + probe * norm) / probe**2
    if not (np.isfinite(curvature) and curvature > 0.0):
        return 1.0
    return float(np.clip(norm / curvature, *FIRST_STEP_RANGE))


@dataclass(frozen=True)
class _QuasiNewtonResult:
    """What :func:`_lbfgsb` found, in θ's own coordinates."""

    x: np.ndarray
    value: float
    gradient: np.ndarray
    inverse_hessian: np.ndarray
    success: bool
    message: str


def _lbfgsb(recorder: _Recorder, x0: np.ndarray, *, ftol_abs: float, maxeval: int, scale: float) -> _QuasiNewtonResult:
    # Unbounded: the objective is even in every template column, so a negative diagonal is as
    # good as its mirror image (ThetaLayout.canonical maps it back). With lme4's bound at 0
    # instead, a scalar term's variance that reaches 0 would stay there, as the objective's
    # slope at 0 is exactly 0 whether 0 is its minimum or not.
    from scipy.optimize import minimize  # here: scipy.optimize costs a new process 0.1 s to import

    value, gradient = recorder.with_gradient(x0)
    step = _first_step_length(recorder, x0, value, gradient)

    # L-BFGS-B works on φ = θ / step, where its first step of length 1 is ``step`` long in θ;
    # the quasi-Newton updates make the scale irrelevant after that
    phi0 = x0 / step

    def to_theta(phi: np.ndarray) -> np.ndarray:
        return x0 if np.array_equal(phi, phi0) else phi * step  # the start exactly, as recorded

    def in_phi(phi: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = recorder.with_gradient(to_theta(phi))
        return value, gradient * step

    result = minimize(
        in_phi,
        phi0,
        jac=True,
        method="L-BFGS-B",
        # SciPy's ftol is relative to the objective: convert lme4's absolute tolerance; gtol
        # applies to φ's gradient, step times θ's
        options={
            "ftol": max(ftol_abs / max(1.0, abs(scale)), RELATIVE_FTOL_FLOOR),
            "gtol": PROJECTED_GRADIENT_TOLERANCE * step,
            "maxcor": LBFGSB_MEMORY,
            "maxfun": max(1, maxeval),
            "maxiter": max(1, maxeval),
        },
    )
    return _QuasiNewtonResult(
        # where L-BFGS-B stopped at a point answered for by one evaluated next to it, that one
        x=recorder.evaluated_point(to_theta(result.x)).copy(),
        value=float(result.fun),
        gradient=result.jac / step,
        inverse_hessian=result.hess_inv.todense() * step**2,
        success=bool(result.success),
        message=str(result.message),
    )


#: A failed line search ends L-BFGS-B's run as converged when a quasi-Newton step from its
#: last point would lower the objective by no more than this: the gradient is then at its
#: own rounding level (the 100k-row crossed intercepts on two BLAS threads: 0.006, a
#: decrease of 1.2e-7, and BOBYQA took 50 more evaluations to find nothing lower).
SETTLED_DECREASE = 1e-6


#: Runs of L-BFGS-B after its first, while a step would still gain over ``SETTLED_DECREASE``.
LBFGSB_RESTARTS = 4


def _predicted_decrease(result: _QuasiNewtonResult) -> float:
    """½ g'H⁻¹g at L-BFGS-B's last point: what a quasi-Newton step would still gain, in the
    objective's own (deviance) units; infinite where the curvature is unusable."""
    decrease = 0.5 * float(result.gradient @ result.inverse_hessian @ result.gradient)
    return decrease if np.isfinite(decrease) and decrease >= 0.0 else np.inf


def _lbfgsb_settled(
    recorder: _Recorder, x0: np.ndarray, *, ftol_abs: float, maxeval: int, scale: float
) -> _QuasiNewtonResult:
    """L-BFGS-B, run again from its last point while a quasi-Newton step would still gain
    more than ``SETTLED_DECREASE`` (the convergence check's measure): its relative tolerance
    (``RELATIVE_FTOL_FLOOR``) alone can stop short of the optimum on large criteria."""
    result = _lbfgsb(recorder, x0, ftol_abs=ftol_abs, maxeval=maxeval, scale=scale)
    for _ in range(LBFGSB_RESTARTS):
        remaining = maxeval - recorder.count
        if not result.success or remaining <= 0 or _predicted_decrease(result) <= SETTLED_DECREASE:
            break
        again = _lbfgsb(recorder, result.x, ftol_abs=ftol_abs, maxeval=remaining, scale=scale)
        if not again.value < result.value:
            break
        result = again
    return result


def _settled(result: _QuasiNewtonResult) -> bool:
    """Whether L-BFGS-B stopped (a failed line search) where nothing is left to gain.

    Examples
    --------
    >>> def stopped(gradient):
    ...     return _QuasiNewtonResult(np.zeros(1), 0.0, np.array([gradient]), np.eye(1), False, "ABNORMAL: ")
    >>> _settled(stopped(1e-4)), _settled(stopped(1.0))
    (True, False)
    """
    return _predicted_decrease(result) <= SETTLED_DECREASE


def _restart_bobyqa(
    recorder: _Recorder,
    lower: np.ndarray,
    control: Control,
    initial_step: float | np.ndarray,
    return_code: str,
    converged: bool,
) -> tuple[str, bool]:
    """BOBYQA restarted from its best point with ``initial_step``, for as long as a restart
    gains more than ``ftol_abs`` (at most ``control.restarts`` times) and evaluations remain."""
    rules = {"ftol_abs": control.ftol_abs, "xtol_abs": control.xtol_abs, "ftol_rel": control.ftol_rel}
    for _ in range(control.restarts):
        before = recorder.best_f
        remaining = control.max_evaluations - recorder.count
        assert recorder.best_x is not None
        if not converged or remaining <= _bobyqa_model_size(len(recorder.best_x)):
            break
        return_code, converged = _bobyqa(
            recorder, lower, recorder.best_x.copy(), maxeval=remaining, initial_step=initial_step, **rules
        )
        if before - recorder.best_f <= control.ftol_abs:
            break
    return return_code, converged


def _quasi_newton(
    recorder: _Recorder,
    x0: np.ndarray,
    initial_value: float,
    control: Control,
    lower: np.ndarray,
    canonical: Callable[[np.ndarray], np.ndarray],
) -> tuple[str, str, bool, tuple[np.ndarray, np.ndarray] | None]:
    """L-BFGS-B from ``x0`` (unbounded: ``canonical`` maps its point into the bounds, the
    objective being even in each template column), then BOBYQA from its best point should it
    stop unsettled. Returns (algorithm, return code, converged, the gradient and inverse
    Hessian at the optimum where L-BFGS-B ended there); the recorder's best point is the
    optimum, in canonical coordinates."""
    ftol_abs, maxeval = control.ftol_abs, control.max_evaluations
    rules = {"ftol_abs": ftol_abs, "xtol_abs": control.xtol_abs, "ftol_rel": control.ftol_rel}
    algorithm = "L-BFGS-B"
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None
    result = _lbfgsb_settled(
        recorder, x0, ftol_abs=ftol_abs, maxeval=maxeval - LBFGSB_SETUP_EVALUATIONS, scale=initial_value
    )
    return_code, converged = result.message, result.success
    if not converged and _settled(result):
        converged = True
        return_code = (
            f"{result.message} (settled: a quasi-Newton step would lower the objective by less than "
            f"{SETTLED_DECREASE:g})"
        )
    assert recorder.best_x is not None
    if converged and result.value <= recorder.best_f + ftol_abs:
        # L-BFGS-B's own last point, where its gradient and curvature are, when an earlier
        # point is lower by no more than lme4's absolute tolerance (rounding, mostly):
        # the convergence check then needs no evaluations
        recorder.best_x, recorder.best_f = result.x.copy(), result.value
    if converged and np.array_equal(result.x, recorder.best_x):
        # the same point in canonical coordinates: flipped entries change sign
        signs = np.where(canonical(recorder.best_x) == recorder.best_x, 1.0, -1.0)
        quasi_newton = (signs * result.gradient, signs[:, None] * result.inverse_hessian * signs[None, :])
    recorder.best_x = canonical(recorder.best_x)
    if not converged and maxeval - recorder.count > _bobyqa_model_size(len(x0)):
        algorithm = "L-BFGS-B+NLOPT_LN_BOBYQA"
        return_code, converged = _bobyqa(
            recorder,
            lower,
            recorder.best_x.copy(),
            maxeval=maxeval - recorder.count,
            initial_step=control.restart_step,
            **rules,
        )
    return algorithm, return_code, converged, quasi_newton


def optimize_theta(
    objective: Callable[[np.ndarray], float],
    layout: ThetaLayout,
    *,
    start: np.ndarray | None = None,
    value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    control: Control | None = None,
    on_evaluation: Callable[[np.ndarray, float, float], None] | None = None,
) -> OptSummary:
    """Minimise ``objective`` over θ with lme4's bounds and tolerances: by L-BFGS-B when
    ``value_and_gradient`` is given, else by BOBYQA.

    L-BFGS-B sizes its first step with one probe down the gradient
    (:func:`_first_step_length`) and stops when an iteration lowers the objective by less
    than ``ftol_abs`` or the projected gradient is below 1e-6; its last point is the result
    unless an earlier one is lower by more than ``ftol_abs``. Should it stop for another
    reason (a failed line search) where a quasi-Newton step would still lower the objective
    by more than ``SETTLED_DECREASE``, BOBYQA carries on from its best point. BOBYQA can stop
    early on the flat objectives of models with many variance parameters; after it stops it
    is restarted from its best point with a small initial step, for as long as a restart
    improves the objective by more than ``ftol_abs`` (at most ``control.restarts`` times). On
    lme4's reference cases this reaches an objective at least as low as lme4's for about
    10–20 extra evaluations.

    Parameters
    ----------
    objective : callable
        θ ↦ criterion (finite everywhere).
    layout : ThetaLayout
        Supplies the bounds and the default start.
    start : numpy.ndarray, optional
        Starting θ; lme4's identity templates by default.
    value_and_gradient : callable, optional
        θ ↦ (criterion, gradient); selects L-BFGS-B.
    control : Control, optional
        Tolerances, the evaluation limit, the restarts and the boundary tolerance
        (:class:`lmmfast.control.Control`'s defaults: lme4's ``nloptwrap``).
    on_evaluation : callable, optional
        Called after every evaluation with (θ, value, seconds), for progress reports.

    Returns
    -------
    OptSummary

    Examples
    --------
    >>> from lmmfast.parameters import ThetaLayout
    >>> summary = optimize_theta(lambda t: (t[0] - 2.0) ** 2, ThetaLayout.from_sizes([1]))
    >>> round(float(summary.final[0]), 6), summary.converged
    (2.0, True)
    """
    control = Control() if control is None else control
    ftol_abs, maxeval, restart_step = control.ftol_abs, control.max_evaluations, control.restart_step
    lower = layout.lower_bounds
    x0 = layout.start if start is None else np.asarray(start, dtype=np.float64).copy()
    x0 = np.maximum(x0, lower)
    recorder = _Recorder(objective, value_and_gradient, on_evaluation)
    began = time.perf_counter()
    initial_value = recorder.with_gradient(x0)[0] if value_and_gradient is not None else recorder(x0, np.empty(0))
    rules = {"ftol_abs": ftol_abs, "xtol_abs": control.xtol_abs, "ftol_rel": control.ftol_rel}
    algorithm = "NLOPT_LN_BOBYQA"
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None
    if value_and_gradient is not None:
        algorithm, return_code, converged, quasi_newton = _quasi_newton(
            recorder, x0, initial_value, control, lower, layout.canonical
        )
    else:
        return_code, converged = _bobyqa(recorder, lower, x0, maxeval=maxeval - 1, initial_step=None, **rules)
    if value_and_gradient is None:
        return_code, converged = _restart_bobyqa(recorder, lower, control, restart_step, return_code, converged)
    assert recorder.best_x is not None
    theta, value, snapped = _snap_to_boundary(
        recorder, layout.is_diagonal, recorder.best_x.copy(), recorder.best_f, control.boundary_tolerance
    )
    if snapped and quasi_newton is not None:
        # the curvature barely moves over the snap; the gradient is taken again where it ends
        quasi_newton = (recorder.with_gradient(theta)[1], quasi_newton[1])
    return recorder.summary(
        algorithm,
        (x0, initial_value),
        (theta, value),
        began,
        (return_code, converged, snapped),
        control,
        quasi_newton,
    )


def optimize_bounded(
    objective: Callable[[np.ndarray], float],
    lower: np.ndarray,
    start: np.ndarray,
    *,
    control: Control,
    initial_step: np.ndarray | None = None,
    snappable: np.ndarray | None = None,
    on_evaluation: Callable[[np.ndarray, float, float], None] | None = None,
    value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    canonical: Callable[[np.ndarray], np.ndarray] | None = None,
) -> OptSummary:
    """Minimise ``objective`` by BOBYQA over a box below ``lower`` (−inf where unbounded), with
    the restarts of :func:`optimize_theta` and its snapping of the parameters marked in
    ``snappable`` (variances' template diagonals) to 0: a generalized model's (θ, β).

    ``initial_step`` sets BOBYQA's first step per parameter (it then works in those units).
    With ``value_and_gradient`` it is L-BFGS-B instead, as in :func:`optimize_theta`, unbounded
    with ``canonical`` mapping its points into the box (the objective being even in the
    coordinates it flips).

    Examples
    --------
    >>> summary = optimize_bounded(
    ...     lambda x: (x[0] - 1.0) ** 2 + (x[1] + 2.0) ** 2, np.array([0.0, -np.inf]), np.array([0.5, 0.0]),
    ...     control=Control(),
    ... )
    >>> summary.final.round(5).tolist(), summary.converged
    ([1.0, -2.0], True)
    """
    ftol_abs, maxeval = control.ftol_abs, control.max_evaluations
    x0 = np.maximum(np.asarray(start, dtype=np.float64), lower)
    recorder = _Recorder(objective, value_and_gradient, on_evaluation)
    began = time.perf_counter()
    algorithm = "NLOPT_LN_BOBYQA"
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None
    if value_and_gradient is not None:
        initial_value = recorder.with_gradient(x0)[0]
        algorithm, return_code, converged, quasi_newton = _quasi_newton(
            recorder, x0, initial_value, control, lower, (lambda x: x) if canonical is None else canonical
        )
    else:
        initial_value = recorder(x0, np.empty(0))
        rules = {"ftol_abs": ftol_abs, "xtol_abs": control.xtol_abs, "ftol_rel": control.ftol_rel}
        step = None if initial_step is None else np.asarray(initial_step, dtype=np.float64)
        return_code, converged = _bobyqa(recorder, lower, x0, maxeval=maxeval - 1, initial_step=step, **rules)
        restart = control.restart_step if step is None else step * control.restart_step
        return_code, converged = _restart_bobyqa(recorder, lower, control, restart, return_code, converged)
    assert recorder.best_x is not None
    x, value = recorder.best_x.copy(), recorder.best_f
    snapped: tuple[int, ...] = ()
    if snappable is not None:
        x, value, snapped = _snap_to_boundary(recorder, snappable, x, value, control.boundary_tolerance)
    if snapped:
        quasi_newton = None
    return recorder.summary(
        algorithm, (x0, initial_value), (x, value), began, (return_code, converged, snapped), control, quasi_newton
    )
