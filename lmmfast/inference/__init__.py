"""Inference on a fitted model: Satterthwaite tests, Wald intervals, likelihood-ratio tests."""

from lmmfast.inference.anova import anova
from lmmfast.inference.satterthwaite import satterthwaite_table

__all__ = ["anova", "satterthwaite_table"]
