"""lme4 formula syntax: split a model formula into its fixed part and random-effects terms."""

from lmmfast.formula.parse import ModelFormula, RandomTermSpec, parse_formula

__all__ = ["ModelFormula", "RandomTermSpec", "parse_formula"]
