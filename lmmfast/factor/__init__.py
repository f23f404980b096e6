"""Factorisations of Λ'Z'ZΛ + I behind one small interface (set θ, log-determinant, solves)."""

from lmmfast.factor.base import RandomEffectsFactor
from lmmfast.factor.blocked import BlockedFactor
from lmmfast.factor.cholmod import CholmodFactor
from lmmfast.factor.choose import choose_method, make_factor
from lmmfast.factor.plan import ROUTES, FactorPlan

__all__ = [
    "ROUTES",
    "BlockedFactor",
    "CholmodFactor",
    "FactorPlan",
    "RandomEffectsFactor",
    "choose_method",
    "make_factor",
]
