"""Contrast codings applied to the factor (fixed and random parts alike), against lme4 and
lmerTest under R's codings (tests/reference/analysis/contrasts.json)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from helpers import ANALYSIS, reference_data

import lmmfast
from lmmfast import ArgumentError, FormulaError

CASES = {case["id"]: case for case in json.loads((ANALYSIS / "contrasts.json").read_text())["cases"]}


def _codings(case: dict) -> dict[str, str]:
    """The reference's codings in lmmfast's names (R's MASS::contr.sdif is "sdif")."""
    return {
        column: "sdif" if coding.startswith("sdif") else coding for column, coding in dict(case["contrasts"]).items()
    }


@pytest.mark.parametrize("case_id", list(CASES))
def test_codings_reproduce_lme4_and_lmertest(case_id):
    case = CASES[case_id]
    fit = lmmfast.lmm(case["formula"], reference_data(case["data"]), reml=case["REML"], contrasts=_codings(case))
    assert fit.objective == pytest.approx(case["objective"], rel=1e-6)
    if "theta" in case:
        np.testing.assert_allclose(np.abs(fit.theta), np.abs(case["theta"]), rtol=1e-3, atol=1e-4)
    reference = case["fixef"]
    table = fit.coef_table
    np.testing.assert_allclose(table.estimate, reference["estimate"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(table.std_error, reference["se"], rtol=1e-5)
    np.testing.assert_allclose(table.t_value, reference["t"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(table.df, reference["df"], rtol=1e-3)
    np.testing.assert_allclose(table.p_value, reference["p"], atol=1e-4)


def test_sum_coding_reaches_the_random_slope():
    data = reference_data("kb07_factors.csv")
    fit = lmmfast.lmm("RTtrunc ~ prec + (1 + prec | item)", data, contrasts={"prec": "sum"})
    assert fit.terms[0].columns == ("(Intercept)", "prec[S.break]")
    assert list(fit.fixef.index) == ["Intercept", "prec[S.break]"]


def test_the_package_default_codes_every_factor_and_a_call_overrides_it():
    machines = lmmfast.datasets.load("machines")
    previous = lmmfast.set_options(contrasts="sum")
    try:
        fit = lmmfast.lmm("score ~ Machine + (1 | Worker)", machines)
        assert list(fit.fixef.index) == ["Intercept", "Machine[S.A]", "Machine[S.B]"]
        treatment = lmmfast.lmm("score ~ Machine + (1 | Worker)", machines, contrasts={"Machine": "treatment"})
        assert list(treatment.fixef.index) == ["Intercept", "Machine[T.B]", "Machine[T.C]"]
    finally:
        lmmfast.set_options(**previous)
    assert lmmfast.get_options()["contrasts"] == "treatment"
    # the grand mean under sum coding, the first level's mean under treatment coding
    assert fit.fixef["Intercept"] == pytest.approx(machines.score.mean(), rel=1e-6)


def test_a_generalized_fit_takes_codings_too():
    data = lmmfast.datasets.load("verbagg")
    fit = lmmfast.glmm("r2 ~ btype + (1 | id)", data, nagq=0, contrasts={"btype": "sum"})
    assert list(fit.fixef.index) == ["Intercept", "btype[S.curse]", "btype[S.scold]"]


@pytest.mark.parametrize(
    ("kwargs", "error", "phrase"),
    [
        ({"contrasts": {"Machine": "deviation"}}, ArgumentError, "the coding of 'Machine' must be 'treatment', 'sum'"),
        ({"contrasts": {"Worker": "sum"}}, ArgumentError, "contrasts names 'Worker', which the model's predictors"),
        ({"contrasts": ["sum"]}, ArgumentError, "contrasts must be a dict of column → coding"),
    ],
)
def test_bad_codings_are_refused(kwargs, error, phrase):
    with pytest.raises(error, match=re.escape(phrase)):
        lmmfast.lmm("score ~ Machine + (1 | Worker)", lmmfast.datasets.load("machines"), **kwargs)


def test_a_numeric_column_cannot_be_coded():
    sleep = lmmfast.datasets.load("sleepstudy")
    with pytest.raises(ArgumentError, match=re.escape("contrasts names 'Days', a numeric column")):
        lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep, contrasts={"Days": "sum"})


def test_a_coding_given_as_a_string_inside_c_says_how_to_write_it():
    with pytest.raises(FormulaError, match=re.escape("write C(Machine, contr.sum), or leave the formula")):
        lmmfast.lmm("score ~ C(Machine, 'sum') + (1 | Worker)", lmmfast.datasets.load("machines"))
    fit = lmmfast.lmm("score ~ C(Machine, contr.sum) + (1 | Worker)", lmmfast.datasets.load("machines"))
    assert list(fit.fixef.index) == ["Intercept", "Machine[S.A]", "Machine[S.B]"]


#: R's contr.helmert(3) and MASS::contr.sdif(3), as matrices.
HELMERT = np.array([[-1.0, -1.0], [1.0, -1.0], [0.0, 2.0]])
SDIF = np.array([[-2.0, -1.0], [1.0, -1.0], [1.0, 2.0]]) / 3.0


@pytest.mark.parametrize(("case_id", "matrix"), [("machines_helmert", HELMERT), ("machines_sdif", SDIF)])
def test_a_coding_matrix_reproduces_r_under_the_same_matrix(case_id, matrix):
    case = CASES[case_id]
    coding = pd.DataFrame(matrix, index=["A", "B", "C"], columns=["one", "two"])
    fit = lmmfast.lmm(case["formula"], reference_data(case["data"]), reml=case["REML"], contrasts={"Machine": coding})
    assert list(fit.fixef.index) == ["Intercept", "Machine[one]", "Machine[two]"]
    assert fit.objective == pytest.approx(case["objective"], rel=1e-6)
    np.testing.assert_allclose(fit.coef_table.estimate, case["fixef"]["estimate"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit.coef_table.std_error, case["fixef"]["se"], rtol=1e-5)


def test_a_coding_matrix_without_names_or_in_another_row_order(tmp_path):
    data = lmmfast.datasets.load("machines")
    plain = lmmfast.lmm("score ~ Machine + (1 | Worker)", data, contrasts={"Machine": HELMERT.tolist()})
    assert list(plain.fixef.index) == ["Intercept", "Machine[1]", "Machine[2]"]
    shuffled = pd.DataFrame(HELMERT[[2, 0, 1]], index=["C", "A", "B"], columns=["x", "y"])
    reordered = lmmfast.lmm("score ~ Machine + (1 | Worker)", data, contrasts={"Machine": shuffled})
    np.testing.assert_allclose(reordered.beta, plain.beta, rtol=1e-10)
    plain.save(tmp_path / "fit.lmmfast")  # the matrix is part of the saved design and of its restoring
    np.testing.assert_array_equal(lmmfast.load(tmp_path / "fit.lmmfast").predict(data), plain.predict(data))
    restored = lmmfast.load(tmp_path / "fit.lmmfast", data=data)
    assert restored.fixef_names == plain.fixef_names


@pytest.mark.parametrize(
    ("matrix", "phrase"),
    [
        ([[1.0], [0.0]], "must have one row per level (3) and 1 to 2 columns, got shape (2, 1)"),
        ([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]], "1 to 2 columns, got shape (3, 3)"),
        ([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], "is not of full rank together with the intercept"),
        ([[1.0, np.nan], [0.0, 1.0], [-1.0, -1.0]], "has missing or infinite entries"),
        ("deviation", "the coding of 'Machine' must be 'treatment', 'sum'"),
        (pd.DataFrame([[1.0], [0.0], [-1.0]], index=["A", "B", "D"]), "its index the levels ['A', 'B', 'C']"),
        (pd.DataFrame([[1.0], [0.0], [-1.0]], index=["A", "B", "C"], columns=["a(b"]), "without brackets"),
        ({"A": 1}, "must be one of 'treatment', 'sum'"),
    ],
)
def test_bad_coding_matrices_are_refused_with_the_reason(matrix, phrase):
    with pytest.raises(ArgumentError, match=re.escape(phrase)):
        lmmfast.lmm("score ~ Machine + (1 | Worker)", lmmfast.datasets.load("machines"), contrasts={"Machine": matrix})
