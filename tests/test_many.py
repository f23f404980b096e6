"""lmm_many: each response's row equals its own lmm fit; processes change nothing; bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmfast


@pytest.fixture(scope="module")
def responses() -> pd.DataFrame:
    data = lmmfast.datasets.load("sleepstudy")
    noise = np.random.default_rng(3).normal(0.0, 25.0, (len(data), 4))
    extra = pd.DataFrame(data.Reaction.to_numpy()[:, None] + noise, columns=[f"y{i}" for i in range(4)])
    return pd.concat([data, extra], axis=1)


def test_each_row_is_the_responses_own_fit(responses) -> None:
    table = lmmfast.lmm_many("~ Days + (Days | Subject)", responses, ["Reaction", "y0", "y1", "y2", "y3"])
    assert list(table.index) == ["Reaction", "y0", "y1", "y2", "y3"]
    for name in table.index:
        alone = lmmfast.lmm(f"{name} ~ Days + (Days | Subject)", responses, checks={"singular": "ignore"})
        row = table.loc[name]
        assert row.objective == pytest.approx(alone.objective, rel=1e-10)
        np.testing.assert_allclose(row[list(alone.fixef_names)].to_numpy(float), alone.beta, rtol=1e-6)
        np.testing.assert_allclose(row[["se(Intercept)", "se(Days)"]].to_numpy(float), alone.stderr, rtol=1e-6)
        np.testing.assert_allclose(row[list(alone.theta_names)].to_numpy(float), alone.theta, rtol=1e-5, atol=1e-6)
        assert row.sigma == pytest.approx(alone.sigma, rel=1e-6)
        assert bool(row.converged) == alone.converged and bool(row.singular) == alone.singular


def test_processes_give_the_same_table(responses) -> None:
    names = ["y0", "y1", "y2"]
    serial = lmmfast.lmm_many("~ Days + (1 | Subject)", responses, names, reml=False)
    parallel = lmmfast.lmm_many("~ Days + (1 | Subject)", responses, names, reml=False, processes=2)
    pd.testing.assert_frame_equal(serial, parallel)


def test_rows_the_design_drops_are_dropped_for_every_response(responses) -> None:
    data = responses.copy()
    data.loc[[0, 5], "Days"] = np.nan
    table = lmmfast.lmm_many("~ Days + (1 | Subject)", data, ["y0", "y1"])
    alone = lmmfast.lmm("y1 ~ Days + (1 | Subject)", data)
    assert table.loc["y1", "objective"] == pytest.approx(alone.objective, rel=1e-10)


@pytest.mark.parametrize(
    ("formula", "names", "error", "phrase"),
    [
        ("y0 ~ Days + (1 | Subject)", ["y0"], lmmfast.ArgumentError, "formula must be the model's right-hand side"),
        ("~ Days + (1 | Subject)", "y0", lmmfast.ArgumentError, "responses must be a non-empty list of column names"),
        ("~ Days + (1 | Subject)", [], lmmfast.ArgumentError, "responses must be a non-empty list"),
        ("~ Days + (1 | Subject)", ["y0", "y0"], lmmfast.ArgumentError, "responses names 'y0' more than once"),
        ("~ Days + (1 | Subject)", ["y0", "nope"], lmmfast.DataError, "Column 'nope' is not in the data"),
        ("~ Days + (1 | Subject)", ["y0", "label"], lmmfast.DataError, "The response 'label' is not numeric"),
        ("~ Days + (1 | Subject)", ["y0", "gappy"], lmmfast.DataError, "The response 'gappy' has missing values"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(responses, formula, names, error, phrase) -> None:
    data = responses.assign(gappy=responses.y1.where(responses.Days != 3), label="a")
    with pytest.raises(error, match=phrase):
        lmmfast.lmm_many(formula, data, names)


def test_a_matrix_of_responses_gives_the_rows_of_its_columns(responses) -> None:
    design = responses[["Days", "Subject"]]
    matrix = responses[["y0", "y1", "y2"]].to_numpy()
    by_name = lmmfast.lmm_many("~ Days + (Days | Subject)", responses, ["y0", "y1", "y2"])
    by_matrix = lmmfast.lmm_many("~ Days + (Days | Subject)", design, matrix)
    assert list(by_matrix.index) == [0, 1, 2]
    np.testing.assert_array_equal(by_matrix.to_numpy(), by_name.to_numpy())
    assert list(design.columns) == ["Days", "Subject"]  # the caller's data are left alone


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones(180), "responses as an array must be a numeric matrix"),
        (np.ones((179, 2)), "responses has 179 rows and data 180"),
        (np.array([["a"] * 2] * 180), "responses as an array must be a numeric matrix"),
    ],
)
def test_a_bad_matrix_of_responses_is_refused(responses, matrix, message) -> None:
    with pytest.raises(lmmfast.LmmfastError, match=message):
        lmmfast.lmm_many("~ Days + (Days | Subject)", responses[["Days", "Subject"]], matrix)
