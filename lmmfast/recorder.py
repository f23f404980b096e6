"""The optimisers' record of a run: every evaluation in order, the best point, and the
answers to L-BFGS-B's line search that the objective's rounding cannot tell apart.

One :class:`Recorder` wraps the objective for a whole run, whichever optimiser calls it
(:mod:`lmmfast.optimize`, :mod:`lmmfast.lbfgsb`), so that restarts and the switch from one
optimiser to the other keep a single trace, and the run's :class:`~lmmfast.optsummary.OptSummary`
comes from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lmmfast.control import Control
from lmmfast.optsummary import OptSummary

#: The objective's own rounding, relative to its size: evaluations at points 1e-7 apart
#: differ by 1e-8 to 4e-8 in a deviance of 1.1e6 (100k rows).
OBJECTIVE_ROUNDING = 1e-13


class Recorder:
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

    def record(self, x: np.ndarray, value: float, seconds: float) -> None:
        """Count and keep an evaluation at ``x`` an optimiser made itself (``seconds`` long)."""
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
        self.record(x, value, time.perf_counter() - began)
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

    def last_with_gradient(self) -> tuple[np.ndarray, float, np.ndarray] | None:
        """The last (point, value, gradient) :meth:`with_gradient` evaluated, if any."""
        return self._last

    def with_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The value and gradient at ``x`` for SciPy's L-BFGS-B: recorded, or answered from a
        known point the objective cannot tell ``x`` from (:func:`_indistinguishable`)."""
        assert self.value_and_gradient is not None
        for known in (self._last, self._best_with_gradient):
            if known is not None and _indistinguishable(x, known):
                # L-BFGS-B asks again for its start, or its line search has shrunk its step
                # below what the objective can resolve: the answer is known
                self._stand_ins[np.asarray(x, dtype=np.float64).tobytes()] = known[0]
                return known[1], known[2].copy()
        began = time.perf_counter()
        value, gradient = self.value_and_gradient(x)
        self.record(x, float(value), time.perf_counter() - began)
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
