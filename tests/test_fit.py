"""The one fit path: every fit, refit and replicate is optimised, checked and recorded alike."""

from __future__ import annotations

import dataclasses
import pickle
import warnings

import numpy as np
import pytest

import lmmfast
from lmmfast.fit import fit_prepared, refit_ml, refit_response
from lmmfast.prepare import prepare, with_reml, with_response

F = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return lmmfast.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fit(sleep):
    return lmmfast.lmm(F, sleep)


def test_lmm_is_prepare_then_fit_prepared(sleep, fit) -> None:
    direct = fit_prepared(prepare(F, sleep))
    assert direct.objective == fit.objective and direct.n_evals == fit.n_evals
    np.testing.assert_array_equal(direct.theta, fit.theta)


def test_refits_run_the_convergence_check(fit) -> None:
    """``refit`` and the ML refit of ``anova`` skipped the check (``convergence`` was None)."""
    ml = refit_ml(fit)
    assert ml.convergence is not None and ml.convergence.ok
    again = fit.refit(fit.model.fixed.y + 1.0)
    assert again.convergence is not None and again.converged
    assert isinstance(again, lmmfast.LmmResult) and isinstance(fit.refit_ml(), lmmfast.LmmResult)


def test_an_unconverged_refit_warns(fit) -> None:
    starved = dataclasses.replace(fit, model=dataclasses.replace(fit.model, control=lmmfast.Control(max_evaluations=4)))
    with pytest.warns(lmmfast.ConvergenceWarning, match="stopped before converging"):
        refitted = starved.refit(fit.model.fixed.y * 1.5 + np.arange(180) % 7)
    assert not refitted.converged
    with pytest.warns(lmmfast.ConvergenceWarning, match="stopped before converging"):
        refit_ml(starved)


def test_unconverged_bootstrap_replicates_are_reported_once(fit) -> None:
    starved = dataclasses.replace(fit, model=dataclasses.replace(fit.model, control=lmmfast.Control(max_evaluations=4)))
    with pytest.warns(
        lmmfast.ConvergenceWarning, match=r"3 of 3 bootstrap replicates did not converge \(rows 0, 1, 2\)"
    ) as caught:
        starved.bootstrap(3, seed=1)
    assert len(caught) == 1


def test_start_is_passed_through(sleep, fit) -> None:
    warm = lmmfast.lmm(F, sleep, start=fit.theta)
    np.testing.assert_array_equal(warm.optsummary.initial, fit.theta)
    assert warm.objective == pytest.approx(fit.objective, abs=1e-8) and warm.n_evals < fit.n_evals
    with pytest.raises(
        lmmfast.ArgumentError, match=r"start must be 3 finite numbers, one per θ \(Subject.\(Intercept\)"
    ):
        lmmfast.lmm(F, sleep, start=[1.0, 0.0])


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


def test_results_do_not_share_a_factor(sleep, fit) -> None:
    """Each fit optimises a fresh copy of the factor: using one result's factor at another θ
    leaves every other result's answers unchanged."""
    prepared = prepare(F, sleep)
    first, second = fit_prepared(prepared), fit_prepared(prepared)
    assert first.model.objective.factor is not second.model.objective.factor
    assert first.model.objective.factor is not prepared.objective.factor
    before = second.model.objective.solve(second.theta).u.copy()
    first.model.objective(np.array([3.0, 1.0, 2.0]))
    np.testing.assert_array_equal(second.model.objective.solve(second.theta).u, before)
    assert with_reml(prepared, False).objective.factor is not prepared.objective.factor
    assert with_response(prepared, prepared.fixed.y).objective.factor is not prepared.objective.factor


def test_threads_control_caps_the_factors_threads() -> None:
    data = lmmfast.datasets.simulate_crossed(400, 300, 120, seed=1)
    formula = "y ~ cond + (1 + cond | subj) + (1 + cond | item)"
    fit = lmmfast.lmm(formula, data, reml=False, control=lmmfast.Control(threads=1))
    plan = fit.model.objective.factor.describe()
    assert plan.threads == 1 and plan.blas_threads == 1


@pytest.mark.parametrize(
    ("dataset", "formula", "factorization", "route"),
    [
        ("sleepstudy", F, "blocked", None),
        ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "blocked", "grouped"),
        ("kb07", "RTtrunc ~ S + P + (1 + S | subj) + (1 + P | item)", "blocked", "dense"),
        ("insteval", "y ~ service + (1 | s) + (1 | d)", "blocked", "sparse"),
        ("pastes", "strength ~ 1 + (1 | batch/cask)", "cholmod", None),
    ],
)
def test_a_fit_pickles_after_threaded_use_and_answers_as_the_original(dataset, formula, factorization, route) -> None:
    data = lmmfast.datasets.load(dataset)
    if dataset == "insteval":
        data = data.iloc[:20000]
    warnings.simplefilter("ignore", lmmfast.LmmfastWarning)  # pytest restores the filters
    control = lmmfast.Control(factorization=factorization, coupling=route or "auto")
    fit = lmmfast.lmm(formula, data, control=control)
    plan = fit.model.objective.factor.describe()
    assert (plan.path, plan.route) == (factorization, route)
    assert len(fit.cond_var) == len(fit.terms)  # uses the factor after the fit
    copy = pickle.loads(pickle.dumps(fit))
    assert repr(copy) == repr(fit)
    np.testing.assert_array_equal(copy.fixef, fit.fixef)
    np.testing.assert_allclose(copy.predict(data.iloc[:20]), fit.predict(data.iloc[:20]), rtol=1e-12)
    for name, block in fit.cond_var.items():
        np.testing.assert_allclose(lmmfast.LmmResult.of(copy).cond_var[name], block, rtol=1e-10)
    refit_copy = refit_response(copy, copy.model.fixed.y)
    assert refit_copy.objective == pytest.approx(fit.objective, abs=1e-6)
    np.testing.assert_allclose(copy.coef_table.df, fit.coef_table.df, rtol=1e-8)


@pytest.mark.parametrize(
    ("dataset", "formula", "control", "plan"),
    [
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"coupling": "dense"}, ("blocked", "dense")),
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"coupling": "grouped"}, ("blocked", "grouped")),
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"coupling": "sparse"}, ("blocked", "sparse")),
        ("kb07", "RTtrunc ~ S + (1 | subj) + (1 | item)", {"factorization": "cholmod"}, ("cholmod", None)),
    ],
)
def test_the_plan_forces_each_path_and_route_to_the_same_optimum(dataset, formula, control, plan) -> None:
    data = lmmfast.datasets.load(dataset)
    reference = lmmfast.lmm(formula, data, optimizer="bobyqa")
    fit = lmmfast.lmm(formula, data, control=lmmfast.Control(optimizer="bobyqa", **control))
    assert (fit.engine.path, fit.engine.route) == plan
    assert fit.objective == pytest.approx(reference.objective, rel=1e-9)
    assert str(fit.engine) in fit.summary(verbose=True)


def test_a_route_the_model_cannot_take_is_refused(sleep) -> None:
    with pytest.raises(lmmfast.ArgumentError, match=r"coupling='grouped' .* random intercepts only"):
        lmmfast.lmm(
            "RTtrunc ~ S + (1 + S | subj) + (1 | item)",
            lmmfast.datasets.load("kb07"),
            control=lmmfast.Control(coupling="grouped"),
        )
    with pytest.raises(lmmfast.ArgumentError, match="cannot go with factorization='cholmod'"):
        lmmfast.Control(factorization="cholmod", coupling="dense")


def test_verbose_summary_shows_the_engine_and_the_optimiser(fit) -> None:
    lines = fit.summary(verbose=True).splitlines()
    assert lines[3] == f"Engine: {fit.engine}"
    assert lines[4].startswith(f"Optimizer: NLOPT_LN_BOBYQA, {fit.n_evals} evaluations in ")
    assert "Engine:" not in fit.summary()
