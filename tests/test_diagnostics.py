"""What each check does: warn, raise an LmmfastError that stands for the warning, or nothing."""

from __future__ import annotations

import pandas as pd
import pytest

import lmmfast
from lmmfast.diagnostics import report
from lmmfast.errors import error_for


@pytest.mark.parametrize(
    ("warning", "error", "base"),
    [
        (lmmfast.ConvergenceWarning, lmmfast.ConvergenceError, lmmfast.ModelError),
        (lmmfast.SingularFitWarning, lmmfast.SingularFitError, lmmfast.ModelError),
        (lmmfast.RankDeficiencyWarning, lmmfast.RankDeficiencyError, lmmfast.ModelError),
        (lmmfast.BinaryResponseWarning, lmmfast.DataError, lmmfast.DataError),
    ],
)
def test_raise_gives_an_lmmfast_error_with_the_warnings_message(warning, error, base) -> None:
    assert error_for(warning) is error
    with pytest.raises(error, match="the message") as info:
        report("raise", "the message", warning)
    assert isinstance(info.value, base) and isinstance(info.value, lmmfast.LmmfastError)
    assert not isinstance(info.value, Warning)


def test_an_unconverged_fit_raises_convergence_error() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    with pytest.raises(lmmfast.ConvergenceError, match="stopped before converging"):
        lmmfast.lmm(
            "Reaction ~ Days + (Days | Subject)",
            data,
            checks={"convergence": "raise"},
            control=lmmfast.Control(max_evaluations=6),
        )


def test_aliased_columns_raise_rank_deficiency_error() -> None:
    data = lmmfast.datasets.load("sleepstudy").assign(Days2=lambda d: 2 * d.Days + 1)
    with pytest.raises(lmmfast.RankDeficiencyError, match="dropping Days2"):
        lmmfast.lmm("Reaction ~ Days + Days2 + (1 | Subject)", data, checks={"rank_deficiency": "raise"})


def _binary(kind: str) -> pd.DataFrame:
    data = lmmfast.datasets.load("sleepstudy")
    fast = data.Reaction < data.Reaction.median()
    return data.assign(fast=fast if kind == "boolean" else fast.astype(int))


@pytest.mark.parametrize("kind", ["0/1", "boolean"])
def test_a_binary_response_warns_that_a_linear_model_is_fitted(kind) -> None:
    with pytest.warns(lmmfast.BinaryResponseWarning, match=r"only the values 0 and 1.*logistic mixed model.*glmer"):
        fit = lmmfast.lmm("fast ~ Days + (1 | Subject)", _binary(kind))
    assert fit.nobs == 180
    quiet = lmmfast.lmm("fast ~ Days + (1 | Subject)", _binary(kind), checks={"binary_response": "ignore"})
    assert quiet.objective == fit.objective
    with pytest.raises(lmmfast.DataError, match="only the values 0 and 1"):
        lmmfast.lmm("fast ~ Days + (1 | Subject)", _binary(kind), checks={"binary_response": "raise"})


def test_a_response_of_other_values_does_not_warn() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    lmmfast.lmm("y ~ Days + (1 | Subject)", data.assign(y=(data.Reaction > 300).astype(int) + 1))
