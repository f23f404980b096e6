"""lmmfast: lme4's linear mixed models in Python, fast on large crossed designs.

Examples
--------
>>> import lmmfast
>>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
>>> print(fit.summary())  # doctest: +SKIP
"""

import os as _os
import sys as _sys

from lmmfast.blas import request_short_idle_spin as _request_short_idle_spin

# before anything below imports SciPy's LAPACK, which reads the variable once (lmmfast.blas)
_request_short_idle_spin(_os.environ, _sys.modules)

from typing import TYPE_CHECKING as _TYPE_CHECKING

from lmmfast import datasets
from lmmfast._version import __version__
from lmmfast.api import glmm, lmm
from lmmfast.control import Control
from lmmfast.errors import (
    ArgumentError,
    BinaryResponseWarning,
    ConvergenceError,
    ConvergenceWarning,
    DataError,
    DataNotSavedError,
    FormulaError,
    LmmfastError,
    LmmfastWarning,
    MemoryBudgetError,
    MissingDependencyError,
    ModelError,
    RankDeficiencyError,
    RankDeficiencyWarning,
    SavedFitError,
    SeparationWarning,
    SingularFitError,
    SingularFitWarning,
)
from lmmfast.fitted import LmmResult
from lmmfast.options import get_options, set_options
from lmmfast.power import extend_levels, model_spec, power, power_curve

#: Names imported on first use (PEP 562): the generalized models' modules (with
#: scipy.special), which the classes and saved fits import, cost a new process about 60 ms,
#: and a process that fits only linear models never needs them; nor does it need the
#: analysis after the fit. (Each name differs from its module's, which an import of the
#: module binds on the package: ``power`` is imported when the package is.)
_LAZY = {
    "anova": "lmmfast.inference.anova",
    "lmm_many": "lmmfast.many",
    "Family": "lmmfast.generalized.family",
    "GlmmResult": "lmmfast.generalized.result",
    "GeneralizedLinearMixedModel": "lmmfast.models",
    "LinearMixedModel": "lmmfast.models",
    "load": "lmmfast.saved",
}

if _TYPE_CHECKING:
    from lmmfast.generalized.family import Family
    from lmmfast.generalized.result import GlmmResult
    from lmmfast.inference.anova import anova
    from lmmfast.many import lmm_many
    from lmmfast.models import GeneralizedLinearMixedModel, LinearMixedModel
    from lmmfast.saved import load


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'lmmfast' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ArgumentError",
    "BinaryResponseWarning",
    "Control",
    "ConvergenceError",
    "ConvergenceWarning",
    "DataError",
    "DataNotSavedError",
    "Family",
    "FormulaError",
    "GeneralizedLinearMixedModel",
    "GlmmResult",
    "LinearMixedModel",
    "LmmResult",
    "LmmfastError",
    "LmmfastWarning",
    "MemoryBudgetError",
    "MissingDependencyError",
    "ModelError",
    "RankDeficiencyError",
    "RankDeficiencyWarning",
    "SavedFitError",
    "SeparationWarning",
    "SingularFitError",
    "SingularFitWarning",
    "__version__",
    "anova",
    "datasets",
    "extend_levels",
    "get_options",
    "glmm",
    "lmm",
    "lmm_many",
    "load",
    "model_spec",
    "power",
    "power_curve",
    "set_options",
]
