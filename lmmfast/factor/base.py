"""The interface every factorisation path satisfies, so the objective never knows which ran."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lmmfast.crossprod import CrossProducts
from lmmfast.factor.plan import FactorPlan

#: L-BFGS-B pays where an evaluation with the gradient costs at most this many without: it
#: needs about a sixth of BOBYQA's evaluations.
MAX_GRADIENT_COST = 6.0


class RandomEffectsFactor(Protocol):
    """A Cholesky factor L of P(Λ'Z'ZΛ + I)P' that can be refreshed for a new θ.

    The factor's structure (patterns, the stored Z'Z, its symbolic analysis) is fixed when it
    is made and shared by its :meth:`fresh` copies; its numbers (the factor at the θ of the
    last :meth:`update`) are its own. Every use starts with :meth:`update`.
    """

    #: Whether :meth:`logdet_gradient_sums` and :meth:`zz_times` exist (the analytic gradient).
    supports_gradient: bool
    #: What one evaluation with the gradient costs, in evaluations without (an estimate).
    gradient_cost: float
    #: Order of the dense block the path factors by LAPACK (0 for none).
    dense_size: int
    #: BLAS threads a fit on this factor should use (None: BLAS's own default).
    blas_threads: int | None

    def update(self, theta: np.ndarray) -> None:
        """Refactor for covariance parameters ``theta``."""

    def logdet(self) -> float:
        """log |L|² = log det(Λ'Z'ZΛ + I)."""

    def solve_L(self, rhs: np.ndarray) -> np.ndarray:
        """L⁻¹ P rhs."""

    def solve_Lt(self, rhs: np.ndarray) -> np.ndarray:
        """P' L'⁻¹ rhs."""

    def logdet_gradient_sums(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, the sums from which ∂ log|L|² / ∂θ follows (paths with a gradient)."""

    def zz_times(self, V: np.ndarray) -> np.ndarray:
        """Z'Z V (paths with a gradient)."""

    def inverse_diagonal_blocks(self) -> list[np.ndarray] | None:
        """Per term, the (levels, k, k) diagonal blocks of M⁻¹ at the last :meth:`update`
        where the path has a selected inverse; None where they need q solves."""

    def inverse_on_pattern(self) -> np.ndarray | None:
        """M⁻¹ at every stored block of Z'Z (laid out as the cross-products' ``block_values``)
        at the last :meth:`update`, where the path has a selected inverse; else None."""

    def fresh(self, max_threads: int | None = None, *, factored: bool = False) -> RandomEffectsFactor:
        """A factor with the same structure and numbers of its own, for another fit, thread or
        process: updating one never changes the other. ``max_threads`` caps its threads.
        ``factored``: the copy starts factored at the θ this one was last updated at (its
        numbers copied, where the path keeps track of that θ), for a refit to a new response
        that starts there."""

    def refill(self, cross_products: CrossProducts) -> None:
        """Take Z'Z's values from cross-products of the same pattern and other weights (a
        generalized model's PIRLS iteration); the next :meth:`update` factors them."""

    def describe(self) -> FactorPlan:
        """The plan the factor runs (path, route, dense block, threads, memory estimate)."""
