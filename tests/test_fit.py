"""The one fit path: every fit, refit and replicate is optimised, checked and recorded alike."""

from __future__ import annotations

import dataclasses
import pickle
import warnings

import numpy as np
import pytest
from helpers import SLEEPSTUDY_SLOPES

import lmmfast
from lmmfast.factor.rank_update import available_cores
from lmmfast.fit import fit_estimates, fit_prepared, refit_ml, refit_response
from lmmfast.objective import INFEASIBLE
from lmmfast.prepare import prepare

F = SLEEPSTUDY_SLOPES


def test_lmm_is_prepare_then_fit_prepared(sleep, fit) -> None:
    direct = fit_prepared(prepare(F, sleep))
    assert direct.objective == fit.objective and direct.n_evals == fit.n_evals
    np.testing.assert_array_equal(direct.theta, fit.theta)


@pytest.mark.parametrize(
    ("dataset", "formula"),
    [
        ("sleepstudy", F),  # a compiled criterion
        ("pastes", "strength ~ 1 + (1 | batch/cask)"),
        ("kb07", "RTtrunc ~ S + P + (1 + S | subj) + (1 + P | item)"),  # on the factor
    ],
)
def test_fit_estimates_are_the_fits_own(dataset, formula) -> None:
    """Bootstrap replicates and many responses read fit_estimates: the same optimisation and
    solve as fit_prepared, to the bit, without the result around them."""
    model = prepare(formula, lmmfast.datasets.load(dataset))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
        fit = fit_prepared(model, checks={"convergence": "ignore"})
    estimates = fit_estimates(model)
    assert estimates.objective == fit.objective and estimates.n_evals == fit.n_evals
    assert estimates.sigma == fit.sigma and estimates.converged == fit.converged
    assert estimates.singular == fit.singular
    for name in ("beta", "beta_covariance", "theta"):
        np.testing.assert_array_equal(getattr(estimates, name), getattr(fit, name), err_msg=name)


def test_gradient_into_is_the_compiled_value_and_gradient(sleep) -> None:
    objective = prepare(F, sleep).objective
    evaluate = objective.gradient_into()
    assert evaluate is not None
    theta = np.array([0.9, 0.05, 0.25])
    out = np.full(3, np.nan)
    value = evaluate(theta, out)
    expected_value, expected = objective.value_and_gradient(theta)
    assert value == expected_value == objective(theta)
    np.testing.assert_array_equal(out, expected)
    # where the criterion cannot be evaluated: INFEASIBLE and no slope
    cp = objective.cross_products
    broken = objective.fresh(cross_products=dataclasses.replace(cp, XytXy=np.zeros_like(cp.XytXy)))
    assert broken.gradient_into()(theta, out) == INFEASIBLE and out.tolist() == [0.0, 0.0, 0.0]
    on_the_factor = objective.fresh()
    on_the_factor.envelope = None
    assert on_the_factor.gradient_into() is None


def test_refits_run_the_convergence_check(fit) -> None:
    """``refit`` and the ML refit of ``anova`` skipped the check (``convergence`` was None)."""
    ml = refit_ml(fit)
    assert ml.convergence is not None and ml.convergence.ok
    again = fit.refit(fit.model.fixed.y + 1.0)
    assert again.convergence is not None and again.converged
    assert isinstance(again, lmmfast.LmmResult) and isinstance(fit.refit_ml(), lmmfast.LmmResult)


def test_an_unconverged_refit_warns(fit) -> None:
    starved_model = dataclasses.replace(fit.model, control=lmmfast.Control(max_evaluations=4))
    starved = dataclasses.replace(fit, prepared=starved_model)
    with pytest.warns(lmmfast.ConvergenceWarning, match="stopped before converging"):
        refitted = starved.refit(fit.model.fixed.y * 1.5 + np.arange(180) % 7)
    assert not refitted.converged
    with pytest.warns(lmmfast.ConvergenceWarning, match="stopped before converging"):
        refit_ml(starved)


def test_unconverged_bootstrap_replicates_are_reported_once(fit) -> None:
    starved_model = dataclasses.replace(fit.model, control=lmmfast.Control(max_evaluations=4))
    starved = dataclasses.replace(fit, prepared=starved_model)
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


@pytest.mark.skipif(available_cores() < 2, reason="the sparse passes run threads only on two or more cores")
@pytest.mark.filterwarnings("ignore::lmmfast.SingularFitWarning")
def test_a_fit_whose_factor_ran_threads_pickles_and_refits_alike() -> None:
    """The sparse route's passes run on the factor's own thread pool, which a pickle leaves
    behind and the copy starts again when it needs it."""
    data = lmmfast.datasets.simulate_crossed(300, 800, 400, seed=1)
    formula = "y ~ cond + (1 + cond | subj) + (1 + cond | item)"
    fit = lmmfast.lmm(formula, data, reml=False, control=lmmfast.Control(coupling="sparse"))
    assert fit.engine.route == "sparse" and fit.engine.threads >= 2
    copy = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(copy.theta, fit.theta)
    y = fit.model.fixed.y + 1.0
    assert refit_response(copy, y).objective == pytest.approx(refit_response(fit, y).objective, rel=1e-12)


def test_a_fit_cannot_change_how_the_model_was_prepared(sleep) -> None:
    prepared = prepare(F, sleep)
    with pytest.raises(lmmfast.ArgumentError, match=r"factorization is fixed when the model is prepared \('auto'\)"):
        fit_prepared(prepared, control=lmmfast.Control(factorization="cholmod"))
    tighter = fit_prepared(prepared, control=lmmfast.Control(ftol_abs=1e-10))
    assert tighter.optsummary.control.ftol_abs == 1e-10


def test_refits_scale_theta_by_the_fits_own_curvature(sleep, fit) -> None:
    """A refit starts at θ̂ with θ scaled by the curvature the fit's convergence check
    measured there, a fit from a given start by the start's own (``start_curvature``): the
    same optimum as a run that probes for its first step instead, in fewer evaluations."""
    from lmmfast.optimize import optimize_theta

    assert fit.convergence is not None and np.all(fit.convergence.curvature > 0)
    evaluations = {"fit's curvature": 0, "start's curvature": 0, "probe": 0}
    for seed in range(10):
        y = fit.simulate(1, seed=seed)[:, 0]
        scaled = refit_response(fit, y)
        prepared = prepare(F, sleep.assign(Reaction=y))
        from_start = fit_prepared(prepared, start=fit.theta)
        objective = prepared.objective
        probed = optimize_theta(
            objective,
            prepared.layout,
            start=fit.theta,
            value_and_gradient=objective.value_and_gradient,
            gradient_into=objective.gradient_into(),
        )
        for run in (scaled, from_start):
            assert run.objective == pytest.approx(probed.final_objective, rel=1e-10)
            np.testing.assert_allclose(run.theta, probed.final, rtol=0, atol=1e-5 * np.abs(probed.final).max())
        evaluations["fit's curvature"] += scaled.n_evals
        evaluations["start's curvature"] += from_start.n_evals
        evaluations["probe"] += probed.n_evals
    assert evaluations["fit's curvature"] < 0.8 * evaluations["probe"]
    assert evaluations["start's curvature"] < 0.8 * evaluations["probe"]


def test_curvature_of_a_fit_without_a_measured_one_is_none(sleep) -> None:
    from lmmfast.fit import curvature_of
    from lmmfast.lbfgsb import curvature_root

    unchecked = lmmfast.lmm(F, sleep, checks={"convergence": "ignore"})
    assert curvature_of(unchecked) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
        on_the_factor = lmmfast.lmm(
            "RTtrunc ~ S + P + (1 + S | subj) + (1 + P | item)", lmmfast.datasets.load("kb07"), optimizer="lbfgsb"
        )
    assert on_the_factor.engine.envelope_size == 0 and on_the_factor.optsummary.algorithm == "L-BFGS-B"
    curvature = curvature_of(on_the_factor)  # L-BFGS-B's own curvature served the check: none measured
    assert curvature is not None and curvature_root(curvature) is None


def test_curvature_not_measured_is_taken_from_the_start(sleep) -> None:
    """Entries of a nearby optimum's curvature that were not measured are the start's own
    approximation (``start_curvature``): a refit from a check that measured nothing runs as
    one given no curvature, and one measured entry is kept."""
    from lmmfast.curvature import start_curvature

    prepared = prepare(F, sleep)
    start = np.array([0.9, 0.02, 0.25])
    plain = fit_prepared(prepared, start=start)
    unmeasured = fit_prepared(prepared, start=start, curvature=np.full(3, np.nan))
    np.testing.assert_array_equal(unmeasured.optsummary.trace_theta, plain.optsummary.trace_theta)
    estimate = start_curvature(
        prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks, start
    )
    given = fit_prepared(prepared, start=start, curvature=np.array([np.nan, estimate[1], estimate[2]]))
    np.testing.assert_array_equal(given.optsummary.trace_theta, plain.optsummary.trace_theta)
    other = fit_prepared(prepared, start=start, curvature=np.array([np.nan, 4 * estimate[1], estimate[2]]))
    assert not np.array_equal(other.optsummary.trace_theta, plain.optsummary.trace_theta)
    assert other.objective == pytest.approx(plain.objective, rel=1e-10)
