"""Minimise the profiled objective over θ, and record how it went.

Two optimisers: NLopt's BOBYQA (derivative-free, lme4's choice) and, where the analytic
gradient is available, a quasi-Newton method — SciPy's L-BFGS-B on the factor, NLopt's
L-BFGS on a compiled criterion, whose evaluations cost less than SciPy's wrapper does, and
BFGS for refits that start with the Hessian of a nearby optimum (bootstrap replicates).
:func:`choose_optimizer` picks the quasi-Newton method when the criterion is compiled or
the model has many variance parameters, many random effects or an expensive factorisation,
where it needs a fraction of BOBYQA's evaluations (kb07 with 20 θ: 50 evaluations against
930; InstEval: 11 against 83; sleepstudy: 22 against 63).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import nlopt
import numpy as np

from lmmfast.bfgs import run_bfgs
from lmmfast.control import Control
from lmmfast.factor.base import MAX_GRADIENT_COST
from lmmfast.lbfgsb import NLOPT_RESULT_NAMES, curvature_root, run_lbfgsb, run_nlopt_lbfgs
from lmmfast.optsummary import OptSummary
from lmmfast.parameters import ThetaLayout
from lmmfast.recorder import Recorder

__all__ = ["choose_optimizer", "optimize_bounded", "optimize_theta"]


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
    n_theta: int,
    has_gradient: bool,
    dense_size: int,
    random_effects: int = 0,
    gradient_cost: float = 3.0,
    compiled: bool = False,
) -> str:
    """``"lbfgsb"`` where the gradient exists and pays for itself, else ``"bobyqa"``.

    A compiled criterion (:mod:`lmmfast.factor.envelope`) has a compiled gradient, which
    costs about two evaluations and saves most of them. On the factor, small models
    are as fast by BOBYQA, lme4's own optimiser: their evaluations cost less than the
    fixed overhead of a gradient. Nor does a gradient that costs more than
    ``MAX_GRADIENT_COST`` evaluations pay: L-BFGS-B needs about a sixth of BOBYQA's
    evaluations.

    Examples
    --------
    >>> choose_optimizer(3, True, 0, 36), choose_optimizer(20, True, 128), choose_optimizer(4, True, 64, 120)
    ('bobyqa', 'lbfgsb', 'lbfgsb')
    >>> choose_optimizer(20, False, 0), choose_optimizer(3, True, 0, 36, compiled=True)
    ('bobyqa', 'lbfgsb')
    """
    if compiled and has_gradient:
        return "lbfgsb"
    pays = (
        n_theta >= GRADIENT_MIN_THETA
        or dense_size >= GRADIENT_MIN_DENSE
        or random_effects >= GRADIENT_MIN_RANDOM_EFFECTS
    )
    return "lbfgsb" if has_gradient and pays and gradient_cost <= MAX_GRADIENT_COST else "bobyqa"


#: Snapping a template diagonal to 0 is kept when it raises the objective by at most this
#: fraction of it (rounding).
SNAP_ROUNDING = 1e-10


def _snap_to_boundary(
    recorder: Recorder, snappable: np.ndarray, theta: np.ndarray, value: float, tolerance: float
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
    recorder: Recorder,
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
    return NLOPT_RESULT_NAMES.get(code, str(code)), converged


def _bobyqa_model_size(m: int) -> int:
    """Evaluations BOBYQA needs to build its first quadratic model of m variables (2m + 1):
    a run or restart with fewer left would stop before its first step."""
    return 2 * m + 1


def _restart_bobyqa(
    recorder: Recorder,
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
    recorder: Recorder,
    x0: np.ndarray,
    initial_value: float,
    control: Control,
    lower: np.ndarray,
    canonical: Callable[[np.ndarray], np.ndarray] = lambda x: x,
    compiled: tuple[ThetaLayout, Callable[[np.ndarray, np.ndarray], float]] | None = None,
    root: np.ndarray | None = None,
) -> tuple[str, bool, tuple[np.ndarray, np.ndarray] | None, str]:
    """L-BFGS-B (:func:`lmmfast.lbfgsb.run_lbfgsb`, with ``canonical``), or NLopt's L-BFGS on
    a ``compiled`` (θ's layout, gradient_into) criterion (:func:`lmmfast.lbfgsb.run_nlopt_lbfgs`),
    either on θ = ``root`` φ (:func:`lmmfast.lbfgsb.curvature_root`) where given, then BOBYQA
    from its best point should it stop unsettled. A ``root`` of a whole Hessian (a matrix)
    starts BFGS from it instead (:func:`lmmfast.bfgs.run_bfgs`), and L-BFGS-B only where that
    fails. Returns (return code, converged, the gradient and inverse Hessian at the optimum
    where the run ended there, the algorithm's name)."""
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None
    if compiled is not None:
        algorithm = "NLOPT_LD_LBFGS"
        return_code, converged = run_nlopt_lbfgs(recorder, x0, control, *compiled, root)
    elif root is not None and root.ndim == 2:
        # a whole Hessian measured at a nearby optimum: BFGS keeps it, where L-BFGS-B's limited
        # memory starts every iteration from a scaled identity
        algorithm = "BFGS"
        maxeval = control.max_evaluations - recorder.count
        return_code, converged, quasi_newton = run_bfgs(recorder, x0, root @ root.T, maxeval, canonical)
        if not converged:
            algorithm = "BFGS+L-BFGS-B"
            assert recorder.best_x is not None
            start = recorder.best_x.copy()
            # L-BFGS-B counts its limit from its own start, as if BFGS's evaluations were its set-up
            left = replace(control, max_evaluations=max(1, control.max_evaluations - recorder.count + 1))
            return_code, converged, quasi_newton = run_lbfgsb(recorder, start, initial_value, left, canonical, root)
    else:
        algorithm = "L-BFGS-B"
        return_code, converged, quasi_newton = run_lbfgsb(recorder, x0, initial_value, control, canonical, root)
    if not converged and control.max_evaluations - recorder.count > _bobyqa_model_size(len(x0)):
        assert recorder.best_x is not None
        algorithm += "+NLOPT_LN_BOBYQA"
        return_code, converged = _bobyqa(
            recorder,
            lower,
            recorder.best_x.copy(),
            maxeval=control.max_evaluations - recorder.count,
            initial_step=control.restart_step,
            ftol_abs=control.ftol_abs,
            xtol_abs=control.xtol_abs,
            ftol_rel=control.ftol_rel,
        )
    return return_code, converged, quasi_newton, algorithm


def optimize_theta(
    objective: Callable[[np.ndarray], float],
    layout: ThetaLayout,
    *,
    start: np.ndarray | None = None,
    value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    control: Control | None = None,
    on_evaluation: Callable[[np.ndarray, float, float], None] | None = None,
    gradient_into: Callable[[np.ndarray, np.ndarray], float] | None = None,
    curvature: np.ndarray | None = None,
) -> OptSummary:
    """Minimise ``objective`` over θ with lme4's bounds and tolerances: by L-BFGS-B when
    ``value_and_gradient`` is given, else by BOBYQA.

    L-BFGS-B (:mod:`lmmfast.lbfgsb`) sizes its first step with one probe down the gradient
    and stops when an iteration lowers the objective by less than ``ftol_abs`` or the
    projected gradient is below 1e-6; its last point is the result unless an earlier one is
    lower by more than ``ftol_abs``. Should it stop for another reason (a failed line search)
    where a quasi-Newton step would still lower the objective by more than
    ``SETTLED_DECREASE``, BOBYQA carries on from its best point. BOBYQA can stop
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
    gradient_into : callable, optional
        θ, out ↦ criterion, the gradient written into ``out``: a compiled criterion's
        (:meth:`lmmfast.objective.ProfiledObjective.gradient_into`), whose evaluations cost
        microseconds; with ``value_and_gradient``, selects NLopt's L-BFGS instead of SciPy's
        L-BFGS-B.
    curvature : numpy.ndarray, optional
        The objective's curvature near the start: its diagonal (the convergence check of the
        fit a refit starts from, or :func:`lmmfast.curvature.start_curvature`) or its Hessian
        (:func:`lmmfast.curvature.measured_curvature`). L-BFGS then runs on θ scaled by a
        diagonal (:func:`lmmfast.lbfgsb.curvature_root`) instead of probing for its first step;
        BFGS starts from a Hessian (:func:`lmmfast.bfgs.run_bfgs`).

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
    recorder = Recorder(objective, value_and_gradient, on_evaluation)
    began = time.perf_counter()
    initial_value = recorder.with_gradient(x0)[0] if value_and_gradient is not None else recorder(x0, np.empty(0))
    rules = {"ftol_abs": ftol_abs, "xtol_abs": control.xtol_abs, "ftol_rel": control.ftol_rel}
    algorithm = "NLOPT_LN_BOBYQA"
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None
    if value_and_gradient is not None:
        return_code, converged, quasi_newton, algorithm = _quasi_newton(
            recorder,
            x0,
            initial_value,
            control,
            lower,
            layout.canonical,
            None if gradient_into is None else (layout, gradient_into),
            curvature_root(curvature),
        )
    else:
        return_code, converged = _bobyqa(recorder, lower, x0, maxeval=maxeval - 1, initial_step=None, **rules)
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
    recorder = Recorder(objective, value_and_gradient, on_evaluation)
    began = time.perf_counter()
    algorithm = "NLOPT_LN_BOBYQA"
    quasi_newton: tuple[np.ndarray, np.ndarray] | None = None
    if value_and_gradient is not None:
        initial_value = recorder.with_gradient(x0)[0]
        return_code, converged, quasi_newton, algorithm = _quasi_newton(
            recorder, x0, initial_value, control, lower, canonical=(lambda x: x) if canonical is None else canonical
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
