"""Fixtures shared across the test modules: sleepstudy and lme4's slopes model of it."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import SLEEPSTUDY_SLOPES

import lmmfast


@pytest.fixture(scope="session")
def sleep() -> pd.DataFrame:
    return lmmfast.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def fit(sleep: pd.DataFrame) -> lmmfast.LmmResult:
    return lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep)
