"""Where the first stage starts: the moment estimates of the working response's linear model
where the estimator works, lme4's identity templates where it fails, a user's start as given."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.generalized.family import Family
from lmmfast.generalized.prepare import prepare_glmm
from lmmfast.generalized.start import first_stage_start, moment_theta
from lmmfast.start import START_RANGE

VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
GROUSETICKS = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"


def test_the_moments_start_where_the_estimator_works():
    """On VerbAgg the moments are also the better start: a lower deviance than lme4's."""
    model = prepare_glmm(VERBAGG, lmmfast.datasets.load("verbagg"), Family("binomial"))
    moments = moment_theta(model, model.deviance.fresh())
    deviance = model.deviance.fresh()
    assert deviance.fast(moments, eta=model.start_eta) < deviance.fast(model.layout.start, eta=model.start_eta)
    np.testing.assert_array_equal(first_stage_start(model, model.deviance.fresh()), moments)
    fit = lmmfast.glmm(VERBAGG, lmmfast.datasets.load("verbagg"), nagq=0)
    np.testing.assert_array_equal(fit.stages[0].initial, moments)


def test_lme4s_start_where_the_moments_fail():
    """grouseticks' observation-level term leaves no variation within its levels: the
    estimator puts a standard deviation at its cap, and lme4's identity templates are the
    start (and the better one: a lower deviance)."""
    model = prepare_glmm(GROUSETICKS, lmmfast.datasets.load("grouseticks"), Family("poisson"))
    moments = moment_theta(model, model.deviance.fresh())
    assert moments.max() == START_RANGE[1]
    deviance = model.deviance.fresh()
    assert deviance.fast(model.layout.start, eta=model.start_eta) < deviance.fast(moments, eta=model.start_eta)
    np.testing.assert_array_equal(first_stage_start(model, model.deviance.fresh()), model.layout.start)


def test_a_given_start_is_where_the_first_stage_starts():
    start = np.array([0.7, 0.3])
    fit = lmmfast.glmm(VERBAGG, lmmfast.datasets.load("verbagg"), nagq=0, start=start)
    np.testing.assert_array_equal(fit.stages[0].initial, start)
    default = lmmfast.glmm(VERBAGG, lmmfast.datasets.load("verbagg"), nagq=0)
    assert fit.objective == pytest.approx(default.objective, rel=1e-10)
