"""From user data to model matrices: the data frame, X, and the random-effects terms."""

from lmmfast.design.data import ModelFrame, build_model_frame
from lmmfast.design.fixed import FixedDesign, build_fixed_design
from lmmfast.design.random import RandomTerm, build_random_terms

__all__ = [
    "FixedDesign",
    "ModelFrame",
    "RandomTerm",
    "build_fixed_design",
    "build_model_frame",
    "build_random_terms",
]
