"""The optimiser's record, kept on every fit (lme4's ``optinfo``, MixedModels.jl's ``optsum``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmmfast.control import Control


@dataclass(frozen=True)
class OptSummary:
    """The optimiser's record, kept on every fit.

    Attributes
    ----------
    algorithm : str
        ``"NLOPT_LN_BOBYQA"``, ``"L-BFGS-B"``, or ``"L-BFGS-B+NLOPT_LN_BOBYQA"`` when BOBYQA
        had to finish what L-BFGS-B started; ``"NLOPT_LD_LBFGS"`` on a compiled criterion;
        ``"BFGS"`` for refits from a measured Hessian (bootstrap replicates), and
        ``"BFGS+L-BFGS-B"`` where L-BFGS-B finished.
    initial, final : numpy.ndarray
        θ at the start and at the end (after boundary snapping).
    initial_objective, final_objective : float
    n_evals : int
        Objective evaluations, snapping checks included.
    seconds : float
        Wall time spent optimising.
    return_code : str
        The optimiser's reason for stopping.
    converged : bool
        True when the optimiser stopped on a tolerance.
    snapped : tuple of int
        Indices of θ set exactly to zero on the boundary after the optimiser stopped.
    control : Control
        The settings the fit used (tolerances, limits, optimiser as asked for).
    trace_theta : numpy.ndarray, shape (n_evals, len(θ))
    trace_objective : numpy.ndarray, shape (n_evals,)
        Every point the optimiser evaluated, in order (the fit log). L-BFGS-B searches
        without bounds, so its trace may hold θ with negative template diagonals: the same
        models as their mirror images (:meth:`ThetaLayout.canonical`).
    trace_seconds : numpy.ndarray, shape (n_evals,)
        The wall time of each of those evaluations (with the gradient, where L-BFGS-B asked
        for it).
    gradient, inverse_hessian : numpy.ndarray or None
        After L-BFGS-B, the analytic gradient at ``final`` and L-BFGS-B's quasi-Newton
        approximation of the inverse Hessian there (None otherwise, or when ``final`` is not
        L-BFGS-B's own last point).
    """

    algorithm: str
    initial: np.ndarray
    final: np.ndarray
    initial_objective: float
    final_objective: float
    n_evals: int
    seconds: float
    return_code: str
    converged: bool
    snapped: tuple[int, ...]
    control: Control
    trace_theta: np.ndarray
    trace_objective: np.ndarray
    trace_seconds: np.ndarray
    gradient: np.ndarray | None = None
    inverse_hessian: np.ndarray | None = None

    @property
    def seconds_per_evaluation(self) -> float:
        """The median wall time of one evaluation: a typical evaluation's cost, which the
        first evaluation of a fresh process (compiling or loading numba's kernels) does not
        distort. After L-BFGS-B most evaluations include the gradient, so this is an upper
        estimate of an evaluation without it."""
        return float(np.median(self.trace_seconds)) if self.trace_seconds.size else 0.0
