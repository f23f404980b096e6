"""Every bad input to lmmfast.glmm ends in the documented exception, naming the fix."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import lmmfast
from lmmfast import ArgumentError, DataError, FormulaError, ModelError


def _cbpp() -> pd.DataFrame:
    return lmmfast.datasets.load("cbpp")


def _with(**columns) -> pd.DataFrame:
    return _cbpp().assign(**columns)


N = 56
F = "incidence ~ period + (1 | herd)"

#: (id, formula, data factory, keyword arguments, exception, phrase of the message)
BAD_INPUTS = [
    (
        "three-level factor",
        "outcome ~ period + (1 | herd)",
        lambda: _with(outcome=np.array(["a", "b", "c"] * 19)[:N]),
        {},
        DataError,
        "must have two outcomes; 'outcome' has 3 levels ('a', 'b', 'c')",
    ),
    (
        "proportion without trials",
        "prop ~ period + (1 | herd)",
        _cbpp,
        {},
        DataError,
        "proportions need their number of trials. Pass weights=<trials column>",
    ),
    (
        "values outside [0, 1]",
        F,
        _cbpp,
        {},
        DataError,
        "has values other than 0 and 1 and outside [0, 1]",
    ),
    (
        "proportion outside [0, 1] with trials",
        "incidence ~ period + (1 | herd)",
        _cbpp,
        {"weights": "size"},
        DataError,
        "some values lie outside [0, 1]",
    ),
    (
        "fractional successes",
        "prop ~ period + (1 | herd)",
        lambda: _with(size=_cbpp()["size"] + 0.5),
        {"weights": "size"},
        DataError,
        "are not whole numbers of successes",
    ),
    (
        "negative counts",
        F,
        lambda: _with(incidence=_cbpp()["incidence"] - 3),
        {"family": "poisson"},
        DataError,
        "holds counts (whole numbers >= 0); 'incidence' has negative values",
    ),
    (
        "fractional counts",
        F,
        lambda: _with(incidence=_cbpp()["incidence"] + 0.25),
        {"family": "poisson"},
        DataError,
        "has fractional values",
    ),
    (
        "all successes",
        "ok ~ period + (1 | herd)",
        lambda: _with(ok=np.ones(N)),
        {},
        DataError,
        "Every observation of 'ok' is a success",
    ),
    (
        "all zero counts",
        "none ~ period + (1 | herd)",
        lambda: _with(none=np.zeros(N)),
        {"family": "poisson"},
        DataError,
        "Every count of 'none' is 0",
    ),
    (
        "cbind with negative failures",
        "cbind(incidence, incidence - size) ~ period + (1 | herd)",
        _cbpp,
        {},
        DataError,
        "The failures in cbind(incidence, incidence - size) must be whole numbers >= 0",
    ),
    (
        "cbind with weights",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        _cbpp,
        {"weights": "size"},
        DataError,
        "weights= cannot be added to it",
    ),
    ("cbind of one part", "cbind(incidence) ~ period + (1 | herd)", _cbpp, {}, FormulaError, "two expressions"),
    (
        "cbind for poisson",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        _cbpp,
        {"family": "poisson"},
        DataError,
        "is a binomial response; use family='binomial'",
    ),
    (
        "boolean poisson",
        "flag ~ period + (1 | herd)",
        lambda: _with(flag=np.arange(N) % 2 == 0),
        {"family": "poisson"},
        DataError,
        "is boolean; for a 0/1 outcome use family='binomial'",
    ),
    (
        "log of zero offset",
        "incidence ~ period + offset(log(zero)) + (1 | herd)",
        lambda: _with(zero=np.zeros(N)),
        {"family": "poisson"},
        DataError,
        "The offset 'log(zero)' has 56 infinite or undefined values (log of 0?)",
    ),
    (
        "offset of the wrong length",
        F,
        _cbpp,
        {"family": "poisson", "offset": np.zeros(3)},
        DataError,
        "offset must hold one value per row of the data (56)",
    ),
    (
        "infinite response",
        F,
        lambda: _with(incidence=np.where(np.arange(N) == 3, np.inf, _cbpp()["incidence"])),
        {"family": "poisson"},
        DataError,
        "The response 'incidence' has 1 infinite or undefined values",
    ),
    ("unknown family", F, _cbpp, {"family": "gamma"}, ArgumentError, "family must be 'binomial' or 'poisson'"),
    ("gaussian family", F, _cbpp, {"family": "gaussian"}, ArgumentError, "fit a linear mixed model: lmmfast.lmm"),
    (
        "wrong link",
        F,
        _cbpp,
        {"family": "poisson", "link": "logit"},
        ArgumentError,
        "The poisson family takes the link 'log', got 'logit'",
    ),
    ("negative nagq", F, _cbpp, {"family": "poisson", "nagq": -1}, ArgumentError, "nagq"),
    ("too many nodes", F, _cbpp, {"family": "poisson", "nagq": 30}, ArgumentError, "at most 25"),
    (
        "quadrature with two terms",
        "incidence ~ period + (1 | herd) + (1 | period)",
        _cbpp,
        {"family": "poisson", "nagq": 5},
        ModelError,
        "needs a single scalar random-effects term",
    ),
    (
        "gradient optimizer without a gradient",
        F,
        _cbpp,
        {"family": "poisson", "nagq": 3, "control": lmmfast.Control(optimizer="lbfgsb")},
        ArgumentError,
        "optimizer='lbfgsb' needs the analytic gradient of the deviance, which exists for nagq=0 or 1 with a "
        "canonical link (logit, log); this model has nagq=3 and the log link.",
    ),
    (
        "gradient optimizer with a non-canonical link",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        _cbpp,
        {"link": "probit", "control": lmmfast.Control(optimizer="lbfgsb")},
        ArgumentError,
        "this model has nagq=1 and the probit link. Use optimizer='auto' or 'bobyqa'.",
    ),
]


@pytest.mark.parametrize(
    ("formula", "make_data", "kwargs", "error", "phrase"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises_a_clear_error(formula, make_data, kwargs, error, phrase):
    with pytest.raises(error, match=re.escape(phrase)):
        lmmfast.glmm(formula, make_data(), **kwargs)


def test_offset_in_a_linear_model_is_refused_with_the_way_out():
    with pytest.raises(FormulaError, match=re.escape("lmm takes no offsets; subtract it from the response")):
        lmmfast.lmm("incidence ~ period + offset(log(size)) + (1 | herd)", _cbpp())


def test_the_data_are_left_as_they_were():
    data = _cbpp()
    before = data.copy()
    lmmfast.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", data)
    pd.testing.assert_frame_equal(data, before)


def test_complete_separation_is_a_model_error_that_names_it():
    data = lmmfast.datasets.load("verbagg")
    data = data.assign(x=data.r2 + np.random.default_rng(0).normal(scale=0.01, size=len(data)))
    with pytest.raises(ModelError, match="complete separation"):
        lmmfast.glmm("r2 ~ x + (1 | id)", data, nagq=0)


def test_fitted_probabilities_at_0_or_1_warn_of_separation():
    from lmmfast.generalized.family import Family
    from lmmfast.generalized.fit import report_separation
    from lmmfast.generalized.prepare import prepare_glmm

    model = prepare_glmm("prop ~ period + (1 | herd)", _cbpp(), Family("binomial"), weights="size")
    mu = np.full(N, 0.3)
    report_separation(mu, model, {"separation": "raise"})  # nothing to report
    mu[:3] = 1e-300
    with pytest.warns(lmmfast.SeparationWarning, match="Fitted probabilities numerically 0 or 1 for 3 of 56"):
        report_separation(mu, model, {"separation": "warn"})
    with pytest.raises(ModelError, match="separates the outcomes"):
        report_separation(mu, model, {"separation": "raise"})
