"""The interface every factorisation path satisfies, so the objective never knows which ran."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class RandomEffectsFactor(Protocol):
    """A Cholesky factor L of P(Λ'Z'ZΛ + I)P' that can be refreshed for a new θ."""

    def update(self, theta: np.ndarray) -> None:
        """Refactor for covariance parameters ``theta``."""

    def logdet(self) -> float:
        """log |L|² = log det(Λ'Z'ZΛ + I)."""

    def solve_L(self, rhs: np.ndarray) -> np.ndarray:
        """L⁻¹ P rhs."""

    def solve_Lt(self, rhs: np.ndarray) -> np.ndarray:
        """P' L'⁻¹ rhs."""
