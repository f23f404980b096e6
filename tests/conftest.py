"""Fixtures shared across the test modules: sleepstudy and lme4's slopes model of it, and an
empty store of recently prepared models for each test."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import SLEEPSTUDY_SLOPES

import lmmfast
from lmmfast.recent import RECENT_MODELS


@pytest.fixture(autouse=True)
def _no_recent_models() -> None:
    """Each test prepares its own models: none carried over from an earlier test's calls
    (a test that patches the preparation must see it run)."""
    RECENT_MODELS.clear()


@pytest.fixture(scope="session")
def sleep() -> pd.DataFrame:
    return lmmfast.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def fit(sleep: pd.DataFrame) -> lmmfast.LmmResult:
    return lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep)
