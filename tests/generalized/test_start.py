"""Where the first stage starts: the moment estimates of the working response's linear model
where they have the lower deviance, lme4's identity templates otherwise, a user's start as given."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.generalized.family import Family
from lmmfast.generalized.prepare import prepare_glmm
from lmmfast.generalized.start import first_stage_start, moment_theta

VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
GROUSETICKS = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"


def test_the_moments_start_where_their_deviance_is_lower():
    model = prepare_glmm(VERBAGG, lmmfast.datasets.load("verbagg"), Family("binomial"))
    moments = moment_theta(model, model.deviance.fresh())
    deviance = model.deviance.fresh()
    assert deviance.fast(moments, eta=model.start_eta) < deviance.fast(model.layout.start, eta=model.start_eta)
    np.testing.assert_array_equal(first_stage_start(model, model.deviance.fresh()), moments)
    fit = lmmfast.glmm(VERBAGG, lmmfast.datasets.load("verbagg"), nagq=0)
    np.testing.assert_array_equal(fit.stages[0].initial, moments)


def test_lme4s_start_where_the_moments_mislead():
    """grouseticks' observation-level term takes the residual's variation: the moments put
    a standard deviation far out, and lme4's identity templates have the lower deviance."""
    model = prepare_glmm(GROUSETICKS, lmmfast.datasets.load("grouseticks"), Family("poisson"))
    moments = moment_theta(model, model.deviance.fresh())
    assert moments.max() > 5
    np.testing.assert_array_equal(first_stage_start(model, model.deviance.fresh()), model.layout.start)


def test_a_given_start_is_where_the_first_stage_starts():
    start = np.array([0.7, 0.3])
    fit = lmmfast.glmm(VERBAGG, lmmfast.datasets.load("verbagg"), nagq=0, start=start)
    np.testing.assert_array_equal(fit.stages[0].initial, start)
    default = lmmfast.glmm(VERBAGG, lmmfast.datasets.load("verbagg"), nagq=0)
    assert fit.objective == pytest.approx(default.objective, rel=1e-10)
