"""The exceptions and warnings lmmfast raises on purpose.

Every error derives from :class:`LmmfastError`; those caused by the caller's input also
derive from :class:`ValueError`, so ``except ValueError`` keeps working for code that does
not know lmmfast.
"""

from __future__ import annotations

__all__ = [
    "LmmfastError",
    "FormulaError",
    "DataError",
    "ModelError",
    "MemoryBudgetError",
    "LmmfastWarning",
    "ConvergenceWarning",
    "SingularFitWarning",
    "RankDeficiencyWarning",
]


class LmmfastError(Exception):
    """Base of every error lmmfast raises on purpose."""


class FormulaError(LmmfastError, ValueError):
    """The model formula is malformed or names something that cannot be a term."""


class DataError(LmmfastError, ValueError):
    """The data are missing a column, hold the wrong types, or cannot be used as given."""


class ModelError(LmmfastError, ValueError):
    """The model is not identifiable from these data (too many levels or random effects)."""


class MemoryBudgetError(LmmfastError, MemoryError):
    """The factorisation would need more memory than the configured budget allows."""


class LmmfastWarning(UserWarning):
    """Base of every warning lmmfast issues."""


class ConvergenceWarning(LmmfastWarning):
    """The optimiser stopped without meeting its convergence criteria."""


class SingularFitWarning(LmmfastWarning):
    """The optimum lies on the boundary: some variance components are exactly zero."""


class RankDeficiencyWarning(LmmfastWarning):
    """Fixed-effects columns were aliased with others and have been dropped."""
