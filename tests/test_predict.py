"""Predictions for new data."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast


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
    ("kwargs", "newdata", "error", "phrase"),
    [
        ({"re": "some"}, {"Days": [1.0], "Subject": ["308"]}, lmmfast.ArgumentError, "re must be 'all' or 'none'"),
        ({"new_levels": "zero"}, {"Days": [1.0], "Subject": ["308"]}, lmmfast.ArgumentError, "new_levels must be"),
        ({}, {"Subject": ["308"]}, lmmfast.DataError, "'Days' is not in the data"),
        ({}, {"Days": [np.nan], "Subject": ["308"]}, lmmfast.DataError, "missing value"),
        (
            {},
            {"Days": [np.nan, 1.0], "Subject": ["308", "308"]},
            lmmfast.DataError,
            "newdata has missing values in 1 rows",
        ),
    ],
)
def test_bad_prediction_requests(sleep, kwargs, newdata, error, phrase) -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(error, match=phrase):
        fit.predict(newdata, **kwargs)


@pytest.fixture(scope="module")
def machines():
    return lmmfast.datasets.load("machines")


@pytest.mark.parametrize(
    ("formula", "newdata", "column", "unseen", "known"),
    [
        (
            "score ~ Machine + (1 | Worker)",
            {"Machine": ["D", "A"], "Worker": [1, 2]},
            "Machine",
            "'D'",
            "'A', 'B', 'C'",
        ),
        (
            "score ~ Machine * x + (1 | Worker)",
            {"Machine": ["A", "E"], "x": [1.0, 2.0], "Worker": [1, 2]},
            "Machine",
            "'E'",
            "'A', 'B', 'C'",
        ),
        (
            "score ~ C(Worker) + (1 | Machine)",
            {"Worker": [1, 7], "Machine": ["A", "B"]},
            "Worker",
            "7",
            "1, 2, 3, 4, 5, 6",
        ),
        (
            "score ~ 1 + (0 + Machine | Worker)",
            {"Machine": ["A", "D"], "Worker": [1, 2]},
            "Machine",
            "'D'",
            "'A', 'B', 'C'",
        ),
    ],
    ids=["main effect", "interaction", "C() of numbers", "random slopes on a factor"],
)
def test_an_unseen_level_of_a_categorical_predictor_is_an_error(
    machines, formula, newdata, column, unseen, known
) -> None:
    """formulaic encodes an unseen level as the baseline and only warns: the prediction was
    Machine A's (53.566) for Machine D."""
    fit = lmmfast.lmm(formula, machines.assign(x=np.arange(len(machines)) % 3))
    message = rf"Column '{column}' of newdata has a level the fit has not seen \({unseen}, in 1 row\)"
    message += rf".*knows the levels {known}\."
    with pytest.raises(lmmfast.DataError, match=message):
        fit.predict(newdata)


def test_known_levels_still_predict_as_before(machines) -> None:
    fit = lmmfast.lmm("score ~ Machine + (1 | Worker)", machines)
    prediction = fit.predict({"Machine": ["C", "A"], "Worker": [1, 99]}, re="none")
    np.testing.assert_allclose(prediction, [fit.fixef["Intercept"] + fit.fixef["Machine[T.C]"], fit.fixef["Intercept"]])


def test_numbers_stored_as_text_in_newdata_are_an_error(sleep) -> None:
    """Days as text would be read as a categorical factor the fit never saw."""
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(
        lmmfast.DataError, match=r"Column 'Days' of newdata holds numbers stored as text.*pd\.to_numeric"
    ):
        fit.predict({"Days": ["1", "2"], "Subject": ["308", "309"]})
    with pytest.raises(lmmfast.DataError, match="Column 'Days' of newdata is text or categorical"):
        fit.predict({"Days": ["one", "two"], "Subject": ["308", "309"]})


def test_numbers_where_the_fit_had_text_are_an_error(machines) -> None:
    fit = lmmfast.lmm("score ~ W + (1 | Machine)", machines.assign(W=machines.Worker.astype(str)))
    with pytest.raises(
        lmmfast.DataError, match=r"Column 'W' of newdata is numeric \(int64\), but was text or categorical"
    ):
        fit.predict({"W": [1, 2], "Machine": ["A", "B"]}, re="none")


def test_an_unseen_level_of_a_computed_factor_is_an_error(machines) -> None:
    """A factor computed from a column: formulaic's own warning becomes the error."""
    fit = lmmfast.lmm("score ~ C(Machine.str.lower()) + (1 | Worker)", machines)
    with pytest.raises(lmmfast.DataError, match=r"newdata has levels that the fixed part has not seen.*'d'"):
        fit.predict({"Machine": ["D"], "Worker": [1]})
