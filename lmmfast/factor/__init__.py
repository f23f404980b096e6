"""Factorisations of Λ'Z'ZΛ + I behind one small interface (set θ, log-determinant, solves)."""

from lmmfast.factor.base import RandomEffectsFactor
from lmmfast.factor.cholmod import CholmodFactor

__all__ = ["RandomEffectsFactor", "CholmodFactor"]
