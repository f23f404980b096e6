"""Every bad input ends in the documented exception with a message that names the fix."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import lmmfast
from lmmfast import ArgumentError, DataError, FormulaError, LmmfastError, ModelError


def _sleep() -> pd.DataFrame:
    return lmmfast.datasets.load("sleepstudy")


def _with(**columns) -> pd.DataFrame:
    return _sleep().assign(**columns)


F = "Reaction ~ Days + (Days | Subject)"

#: (id, formula, data factory, keyword arguments, exception, phrase of the message)
BAD_INPUTS = [
    ("unknown column", "Reaction ~ Dayz + (1 | Subject)", _sleep, {}, DataError, "Did you mean 'Days'"),
    ("unknown grouping", "Reaction ~ Days + (1 | Subjekt)", _sleep, {}, DataError, "'Subjekt' is not in the data"),
    ("unknown slope", "Reaction ~ Days + (Nights | Subject)", _sleep, {}, DataError, "'Nights' is not in the data"),
    ("no random term", "Reaction ~ Days", _sleep, {}, FormulaError, "ordinary least squares"),
    ("malformed random term", "Reaction ~ Days + (Days | )", _sleep, {}, FormulaError, "grouping factor is missing"),
    ("unknown function", "Reaction ~ foo(Days) + (1 | Subject)", _sleep, {}, FormulaError, "Unknown function 'foo'"),
    (
        "string response",
        "label ~ Days + (1 | Subject)",
        lambda: _with(label=np.where(np.arange(180) % 3, "a", np.where(np.arange(180) % 2, "b", "c"))),
        {},
        DataError,
        "must be numeric",
    ),
    (
        "two-level categorical response",
        "label ~ Days + (1 | Subject)",
        lambda: _with(label=np.where(np.arange(180) % 2, "yes", "no")),
        {},
        DataError,
        "categorical with two levels ('no' and 'yes'). A binary outcome needs a logistic mixed model",
    ),
    (
        "numbers stored as text",
        F,
        lambda: _with(Reaction=_sleep().Reaction.astype(str)),
        {},
        DataError,
        "holds numbers stored as text (str, e.g. '249.56'); "
        "convert it with data['Reaction'] = pd.to_numeric(data['Reaction'])",
    ),
    (
        "misspelt dotted column",
        "Reac.tino ~ Days + (1 | Subject)",
        lambda: _sleep().rename(columns={"Reaction": "Reac.tion"}),
        {},
        DataError,
        "Did you mean 'Reac.tion'? A column whose name has a dot can be written as it is or quoted in backticks",
    ),
    (
        "levels == observations",
        "Reaction ~ Days + (1 | row)",
        lambda: _with(row=np.arange(180)),
        {},
        ModelError,
        "levels < observations",
    ),
    ("single level", "Reaction ~ Days + (1 | one)", lambda: _with(one="x"), {}, ModelError, "single level"),
    (
        "too many random effects",
        "Reaction ~ Days + (Days | pair)",
        lambda: _with(pair=np.arange(180) // 2),
        {},
        ModelError,
        "random effects",
    ),
    (
        "fewer rows than fixed effects",
        "Reaction ~ C(Days) + (1 | Subject)",
        lambda: _sleep().iloc[:9],
        {},
        ModelError,
        "more observations than fixed effects",
    ),
    (
        "date predictor",
        "Reaction ~ t + (1 | Subject)",
        lambda: _with(t=pd.Timestamp("2020-01-01") + pd.to_timedelta(_sleep().Days, "D")),
        {},
        DataError,
        "holds dates or durations",
    ),
    (
        "overflowing values",
        F,
        lambda: _with(Reaction=_sleep().Reaction * 1e300),
        {},
        DataError,
        "overflow double precision",
    ),
    ("empty data", F, lambda: _sleep().iloc[:0], {}, DataError, "no rows"),
    ("all-missing response", F, lambda: _with(Reaction=np.nan), {}, DataError, "Every row has a missing value"),
    ("infinite response", F, lambda: _with(Reaction=np.r_[np.inf, np.ones(179)]), {}, DataError, "infinite"),
    ("constant response", F, lambda: _with(Reaction=3.0), {}, DataError, "constant"),
    (
        "infinite predictor",
        F,
        lambda: _with(Days=np.r_[np.inf, np.arange(179.0)]),
        {},
        DataError,
        "'Days' has infinite or undefined values",
    ),
    (
        "inf times zero",
        "Reaction ~ Days:f + (1 | Subject)",
        lambda: _with(Days=np.r_[np.inf, np.arange(179.0)], f=np.where(np.arange(180) % 2, "a", "b")),
        {},
        DataError,
        "infinite or undefined",
    ),
    (
        "unequal dict columns",
        F,
        lambda: {"Reaction": [1.0, 2.0], "Days": [1.0], "Subject": ["a", "b"]},
        {},
        DataError,
        "unequal lengths",
    ),
    (
        "duplicated columns",
        F,
        lambda: pd.concat([_sleep(), _sleep()[["Days"]]], axis=1),
        {},
        DataError,
        "more than one column named 'Days'",
    ),
    ("not a data frame", F, lambda: [[1, 2, 3]], {}, DataError, "pandas or polars DataFrame"),
    ("formula not a string", 3, _sleep, {}, FormulaError, "must be a string"),
    ("reml not a bool", F, _sleep, {"reml": "yes"}, ArgumentError, "reml must be True or False"),
    ("REML not a bool", F, _sleep, {"REML": "no"}, ArgumentError, "REML must be True or False"),
    (
        "reml and REML disagree",
        F,
        _sleep,
        {"reml": False, "REML": True},
        ArgumentError,
        "reml=False and REML=True disagree",
    ),
    ("negative weights", F, _sleep, {"weights": -np.ones(180)}, DataError, "must be positive"),
    ("weights of wrong length", F, _sleep, {"weights": np.ones(5)}, DataError, "one value per row"),
    ("unknown weights column", F, _sleep, {"weights": "wt"}, DataError, "'wt' is not in the data"),
    ("string weights column", F, lambda: _with(w="heavy"), {"weights": "w"}, DataError, "must be numeric"),
    ("weights of wrong type", F, _sleep, {"weights": 3.0}, ArgumentError, "column name or an array"),
    (
        "unknown optimizer",
        F,
        _sleep,
        {"optimizer": "newton"},
        ArgumentError,
        "optimizer must be 'auto', 'bobyqa' or 'lbfgsb'",
    ),
    (
        "optimizer not a string",
        F,
        _sleep,
        {"optimizer": 1},
        ArgumentError,
        "optimizer must be 'auto', 'bobyqa' or 'lbfgsb'",
    ),
]


@pytest.mark.parametrize(
    ("formula", "make_data", "kwargs", "error", "phrase"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises_documented_error(formula, make_data, kwargs, error, phrase) -> None:
    with pytest.raises(error, match=re.escape(phrase)) as info:
        lmmfast.lmm(formula, make_data(), **kwargs)
    assert isinstance(info.value, LmmfastError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "make_data",
    [
        lambda: _with(Reaction=pd.array([None, *list(_sleep().Reaction[1:])], dtype="Float64")),
        lambda: {
            "Reaction": [None, *_sleep().Reaction.tolist()[1:]],
            "Days": _sleep().Days.tolist(),
            "Subject": _sleep().Subject.tolist(),
        },
        lambda: _with(Subject=_sleep().Subject.astype(str).where(_sleep().index != 0, None)),
    ],
    ids=["nullable-float", "dict-with-None", "string-group-with-None"],
)
def test_missing_values_in_any_container_drop_the_row(make_data) -> None:
    fit = lmmfast.lmm(F, make_data())
    assert fit.nobs == 179 and fit.dropped_rows.tolist() == [0]


def test_hierarchy() -> None:
    for cls in (lmmfast.ArgumentError, lmmfast.FormulaError, lmmfast.DataError, lmmfast.ModelError):
        assert issubclass(cls, lmmfast.LmmfastError) and issubclass(cls, ValueError)
    assert issubclass(lmmfast.MemoryBudgetError, lmmfast.LmmfastError)
    for cls in (lmmfast.ConvergenceWarning, lmmfast.SingularFitWarning, lmmfast.RankDeficiencyWarning):
        assert issubclass(cls, lmmfast.LmmfastWarning) and issubclass(cls, UserWarning)


def test_lme4_spelling_of_reml_is_accepted() -> None:
    """``REML=False`` used to fail with Python's TypeError for an unexpected keyword."""
    ml = lmmfast.lmm(F, _sleep(), reml=False)
    assert not lmmfast.lmm(F, _sleep(), REML=False).reml
    assert lmmfast.lmm(F, _sleep(), REML=False).objective == ml.objective
    assert lmmfast.lmm(F, _sleep(), REML=True).reml


def test_dotted_column_names_work_as_written_and_in_backticks() -> None:
    """R users' dotted names: formulaic read ``Reac.tion`` as column ``Reac``'s attribute."""
    dotted = _sleep().rename(columns={"Reaction": "Reac.tion", "Days": "Da.ys"})
    base = lmmfast.lmm(F, _sleep())
    for formula in ["Reac.tion ~ Da.ys + (Da.ys | Subject)", "`Reac.tion` ~ `Da.ys` + (`Da.ys` | Subject)"]:
        fit = lmmfast.lmm(formula, dotted)
        assert fit.objective == pytest.approx(base.objective, rel=1e-12)
        assert list(fit.fixef.index) == ["Intercept", "Da.ys"]
