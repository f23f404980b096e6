"""The exceptions and warnings lmmfast raises on purpose.

Every error derives from :class:`LmmfastError`; those caused by the caller's input also
derive from :class:`ValueError`, so ``except ValueError`` keeps working for code that does
not know lmmfast.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "BinaryResponseWarning",
    "ConvergenceError",
    "ConvergenceWarning",
    "DataError",
    "DataNotSavedError",
    "FormulaError",
    "LmmfastError",
    "LmmfastWarning",
    "MemoryBudgetError",
    "MissingDependencyError",
    "ModelError",
    "RankDeficiencyError",
    "RankDeficiencyWarning",
    "SavedFitError",
    "SingularFitError",
    "SingularFitWarning",
    "error_for",
]


class LmmfastError(Exception):
    """Base of every error lmmfast raises on purpose."""


class ArgumentError(LmmfastError, ValueError):
    """An argument of an lmmfast function has the wrong type or an unknown value."""


class FormulaError(LmmfastError, ValueError):
    """The model formula is malformed or names something that cannot be a term."""


class DataError(LmmfastError, ValueError):
    """The data are missing a column, hold the wrong types, or cannot be used as given."""


class ModelError(LmmfastError, ValueError):
    """The model is not identifiable from these data (too many levels or random effects)."""


class ConvergenceError(ModelError):
    """The optimiser did not converge, raised instead of :class:`ConvergenceWarning` when
    ``checks={"convergence": "raise"}``."""


class SingularFitError(ModelError):
    """A boundary (singular) fit, raised instead of :class:`SingularFitWarning` when
    ``checks={"singular": "raise"}``."""


class RankDeficiencyError(ModelError):
    """Aliased fixed-effect columns, raised instead of :class:`RankDeficiencyWarning` when
    ``checks={"rank_deficiency": "raise"}``."""


class MemoryBudgetError(LmmfastError, MemoryError):
    """The factorisation would need more memory than the configured budget allows."""


class MissingDependencyError(LmmfastError, ImportError):
    """An optional dependency that this call needs is not installed (matplotlib for plots)."""


class SavedFitError(LmmfastError, ValueError):
    """A saved fit cannot be read (not a saved fit, damaged, or written by a newer format), or
    the data given to restore it are not the data it was fitted to."""


class DataNotSavedError(LmmfastError, RuntimeError):
    """A fit that does not hold its rows was asked for something that needs them (residuals,
    refits, bootstrap, profiles). For a fit loaded without its data: load it with ``data=``, or
    save it with ``include_data=True``; for a fit of data read in chunks: fit the data in
    memory for it."""


class LmmfastWarning(UserWarning):
    """Base of every warning lmmfast issues."""


class ConvergenceWarning(LmmfastWarning):
    """The optimiser stopped without meeting its convergence criteria."""


class SingularFitWarning(LmmfastWarning):
    """The optimum lies on the boundary: some variance components are exactly zero.

    A boundary (singular) fit is lme4's ``isSingular``: a variance estimated as zero, or a
    covariance matrix of a term that is singular (a correlation of ±1), so that some linear
    combination of the term's random effects has no variance. The estimates are still the
    maximum of the (restricted) likelihood, but the random-effects structure is richer than
    the data can support: the usual remedy is to simplify it — drop the term whose variance
    is zero, replace ``(x | g)`` by ``(x || g)`` to remove a correlation at ±1, or drop a
    random slope — and to compare the models with :func:`lmmfast.anova`. ``fit.singular``
    reports it; ``fit.varcorr`` shows which component is at zero; ``checks={"singular":
    "ignore"}`` silences it and ``"raise"`` makes it a :class:`SingularFitError`.
    """


class RankDeficiencyWarning(LmmfastWarning):
    """Fixed-effects columns were aliased with others and have been dropped."""


class BinaryResponseWarning(LmmfastWarning):
    """The response has only the values 0 and 1 (or is boolean), and a linear mixed model is
    being fitted to it: a linear probability model, whose predictions can leave [0, 1] and
    whose residual variance cannot be constant. Binary outcomes (accuracy, yes/no) are
    usually analysed by a logistic mixed model (lme4's ``glmer(..., family = binomial)``).
    ``checks={"binary_response": "ignore"}`` silences it when the linear model is intended."""


class SeparationWarning(LmmfastWarning):
    """A generalized fit has fitted probabilities numerically 0 or 1 (R's ``glm`` warns the
    same): some predictor, or combination of predictors and random effects, separates the
    successes from the failures — complete or quasi-complete separation. The likelihood then
    keeps rising as some fixed effects grow without bound; their estimates sit where the
    optimiser stopped and their standard errors are meaningless. Look for a level of a factor
    (or a range of a covariate) with only successes or only failures: drop or merge it, or
    simplify the model. ``checks={"separation": "ignore"}`` silences it, ``"raise"`` makes it
    a :class:`ModelError`."""


_ERROR_FOR_WARNING: dict[type[LmmfastWarning], type[LmmfastError]] = {
    ConvergenceWarning: ConvergenceError,
    SingularFitWarning: SingularFitError,
    RankDeficiencyWarning: RankDeficiencyError,
    BinaryResponseWarning: DataError,
}


def error_for(category: type[LmmfastWarning]) -> type[LmmfastError]:
    """The error raised in place of a warning of ``category`` when its check says ``"raise"``.

    Examples
    --------
    >>> error_for(SingularFitWarning).__name__
    'SingularFitError'
    """
    return _ERROR_FOR_WARNING.get(category, ModelError)
