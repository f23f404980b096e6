"""Control: the fit's settings, validated, recorded, and reproducing the defaults' fits."""

from __future__ import annotations

import pytest
from helpers import SLEEPSTUDY_SLOPES

import lmmfast

F = SLEEPSTUDY_SLOPES


def test_control_is_recorded_and_its_shortcuts_conflict(sleep) -> None:
    control = lmmfast.Control(optimizer="bobyqa", ftol_abs=1e-9)
    fit = lmmfast.lmm(F, sleep, control=control)
    assert fit.optsummary.control == control and fit.optsummary.algorithm == "NLOPT_LN_BOBYQA"
    assert lmmfast.lmm(F, sleep, optimizer="bobyqa").optsummary.control == lmmfast.Control(optimizer="bobyqa")
    with pytest.raises(lmmfast.ArgumentError, match=r"optimizer='lbfgsb' and control are both given"):
        lmmfast.lmm(F, sleep, control=control, optimizer="lbfgsb")
    with pytest.raises(lmmfast.ArgumentError, match=r"control must be a lmmfast\.Control"):
        lmmfast.lmm(F, sleep, control={"optimizer": "bobyqa"})


@pytest.mark.parametrize(
    ("settings", "phrase"),
    [
        ({"max_evaluations": 0}, "max_evaluations must be a positive integer"),
        ({"ftol_abs": -1.0}, "ftol_abs must be a positive number"),
        ({"ftol_rel": 2.0}, r"ftol_rel must be a number in \[0, 1\)"),
        ({"restarts": -1}, "restarts must be an integer >= 0"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"factorization": "dense"}, "factorization must be 'auto', 'blocked' or 'cholmod'"),
    ],
)
def test_control_validates_its_settings(settings, phrase) -> None:
    with pytest.raises(lmmfast.ArgumentError, match=phrase):
        lmmfast.Control(**settings)


def test_defaults_reproduce_the_fit_exactly(sleep, fit) -> None:
    explicit = lmmfast.lmm(F, sleep, control=lmmfast.Control())
    assert explicit.objective == fit.objective and explicit.n_evals == fit.n_evals


def test_threads_control_caps_the_factors_threads() -> None:
    data = lmmfast.datasets.simulate_crossed(400, 300, 120, seed=1)
    formula = "y ~ cond + (1 + cond | subj) + (1 + cond | item)"
    fit = lmmfast.lmm(formula, data, reml=False, control=lmmfast.Control(threads=1))
    plan = fit.model.objective.factor.describe()
    assert plan.threads == 1 and plan.blas_threads == 1
