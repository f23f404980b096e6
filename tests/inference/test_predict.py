"""Predictions for new data."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast


@pytest.fixture(scope="module")
def sleep():
    return lmmfast.datasets.load("sleepstudy")


@pytest.mark.parametrize(
    ("dataset", "formula"),
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
        ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
        ("machines", "score ~ Machine + (1 | Worker/Machine)"),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ],
)
def test_predicting_the_fitting_data_gives_the_fitted_values(dataset, formula) -> None:
    data = lmmfast.datasets.load(dataset)
    fit = lmmfast.lmm(formula, data)
    np.testing.assert_allclose(fit.predict(data), fit.fitted(), rtol=1e-12)


def test_population_level_and_new_levels(sleep) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    new = {"Days": [2.0, 2.0], "Subject": ["308", "new"]}
    population = fit.fixef["Intercept"] + 2 * fit.fixef["Days"]
    all_effects = fit.predict(new)
    assert all_effects[1] == pytest.approx(population)
    assert all_effects[0] == pytest.approx(population + fit.ranef["Subject"].loc["308"] @ [1.0, 2.0])
    np.testing.assert_allclose(fit.predict({"Days": [2.0]}, re="none"), [population])
    with pytest.raises(lmmfast.DataError, match="levels of 'Subject' the fit has not seen"):
        fit.predict(new, new_levels="error")


@pytest.mark.parametrize(
    ("kwargs", "newdata", "phrase"),
    [
        ({"re": "some"}, {"Days": [1.0], "Subject": ["308"]}, "re must be"),
        ({"new_levels": "zero"}, {"Days": [1.0], "Subject": ["308"]}, "new_levels must be"),
        ({}, {"Subject": ["308"]}, "'Days' is not in the data"),
        ({}, {"Days": [np.nan], "Subject": ["308"]}, "missing value"),
        ({}, {"Days": [np.nan, 1.0], "Subject": ["308", "308"]}, "newdata has missing values in 1 rows"),
    ],
)
def test_bad_prediction_requests(sleep, kwargs, newdata, phrase) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(lmmfast.DataError, match=phrase):
        fit.predict(newdata, **kwargs)
