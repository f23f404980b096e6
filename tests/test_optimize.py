"""The optimiser: bounds, snapping to the boundary, and its record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmfast
from lmmfast.control import Control
from lmmfast.fit import fit_prepared
from lmmfast.lbfgsb import curvature_root
from lmmfast.optimize import optimize_theta
from lmmfast.parameters import ThetaLayout
from lmmfast.prepare import prepare


def test_minimum_inside_the_bounds() -> None:
    layout = ThetaLayout.from_sizes([2])
    target = np.array([1.5, -0.4, 0.7])
    record = optimize_theta(lambda t: float(np.sum((t - target) ** 2)), layout)
    np.testing.assert_allclose(record.final, target, atol=1e-5)
    assert record.converged and record.n_evals > 5 and record.final_objective < record.initial_objective


def test_boundary_minimum_is_snapped_to_exact_zero() -> None:
    layout = ThetaLayout.from_sizes([1, 1])
    record = optimize_theta(lambda t: (t[0] + 1.0) ** 2 + (t[1] - 2.0) ** 2, layout)
    assert record.final[0] == 0.0
    assert record.final[1] == pytest.approx(2.0, abs=1e-5)


def test_snapping_never_raises_the_objective() -> None:
    layout = ThetaLayout.from_sizes([1])
    # minimum at 5e-5, inside the singular tolerance but not on the boundary
    record = optimize_theta(lambda t: 1e6 * (t[0] - 5e-5) ** 2, layout)
    assert record.final[0] > 0.0
    assert record.snapped == ()


def test_dyestuff2_optimum_is_on_the_boundary() -> None:
    with pytest.warns(lmmfast.SingularFitWarning, match=r"Batch.\(Intercept\)"):
        fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff2"))
    assert fit.theta.tolist() == [0.0]
    assert fit.singular


def test_maxeval_exhaustion_warns_of_nonconvergence() -> None:
    from lmmfast.fit import assemble
    from lmmfast.prepare import prepare

    prepared = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    record = optimize_theta(prepared.objective, prepared.layout, control=lmmfast.Control(max_evaluations=6))
    assert not record.converged
    assert record.return_code == "MAXEVAL_REACHED"
    assert record.n_evals <= 7
    assert not assemble(prepared, record).converged


def test_fit_log_records_every_evaluation() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    record = fit.optsummary
    assert record.trace_theta.shape == (record.n_evals, 3)
    assert record.trace_objective.min() == pytest.approx(fit.objective)
    assert record.trace_objective[0] == record.initial_objective


def test_convergence_check_passes_at_the_optimum_and_fails_off_it() -> None:
    from lmmfast.api import prepare
    from lmmfast.convergence import check_convergence

    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    assert fit.convergence is not None and fit.convergence.ok and fit.converged
    assert fit.convergence.predicted_decrease < 1e-6
    prepared = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    off = fit.theta * 1.3
    check = check_convergence(prepared.objective, prepared.layout, off, prepared.objective(off))
    assert not check.ok and "Newton step" in check.message


def test_convergence_check_is_scale_free_in_n() -> None:
    """Replicating every row multiplies the deviance's gradient by 2 but leaves the check's
    verdict (a predicted decrease in deviance units) at the optimum unchanged."""
    data = lmmfast.datasets.load("sleepstudy")
    doubled = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", pd.concat([data, data]))
    assert doubled.convergence is not None and doubled.convergence.ok


@pytest.mark.parametrize("action", ["warn", "raise", "ignore"])
def test_checks_choose_warn_raise_or_ignore(action) -> None:
    data = lmmfast.datasets.load("dyestuff2")
    checks = {"singular": action}
    if action == "warn":
        with pytest.warns(lmmfast.SingularFitWarning):
            lmmfast.lmm("Yield ~ 1 + (1 | Batch)", data, checks=checks)
    elif action == "raise":
        with pytest.raises(lmmfast.SingularFitError, match="Boundary") as info:
            lmmfast.lmm("Yield ~ 1 + (1 | Batch)", data, checks=checks)
        assert isinstance(info.value, lmmfast.ModelError) and isinstance(info.value, lmmfast.LmmfastError)
    else:
        assert lmmfast.lmm("Yield ~ 1 + (1 | Batch)", data, checks=checks).singular


def test_ignoring_convergence_skips_the_check() -> None:
    fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"), checks={"convergence": "ignore"})
    assert fit.convergence is None and fit.converged


@pytest.mark.parametrize(
    ("checks", "phrase"),
    [
        ({"singularity": "warn"}, "Unknown check 'singularity'"),
        ({"singular": "loud"}, "must be 'warn', 'raise' or 'ignore'"),
        ("all", "must be a dict"),
    ],
)
def test_bad_checks_are_rejected(checks, phrase) -> None:
    with pytest.raises(lmmfast.ArgumentError, match=phrase):
        lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"), checks=checks)


def test_intercept_only_models_start_from_moment_estimates_and_reach_the_same_optimum() -> None:
    from lmmfast.api import prepare
    from lmmfast.start import initial_theta

    data = lmmfast.datasets.load("penicillin")
    prepared = prepare("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    start = initial_theta(prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks)
    assert not np.array_equal(start, prepared.layout.start)
    fit = lmmfast.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    np.testing.assert_array_equal(fit.optsummary.initial, start)
    from_identity = optimize_theta(prepared.objective, prepared.layout)
    assert fit.objective == pytest.approx(from_identity.final_objective, rel=1e-10)


@pytest.mark.parametrize(
    ("data", "formula"),
    [("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"), ("pastes", "strength ~ 1 + (1 | batch/cask)")],
    ids=["crossed", "nested"],
)
def test_balanced_intercepts_start_at_the_reml_estimates(data, formula) -> None:
    # the joint moment equations are the balanced analysis of variance, whose estimates are
    # REML's where positive: the optimiser starts at its optimum
    from lmmfast.api import prepare
    from lmmfast.start import initial_theta

    prepared = prepare(formula, lmmfast.datasets.load(data))
    start = initial_theta(prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks)
    fit = lmmfast.lmm(formula, lmmfast.datasets.load(data))
    np.testing.assert_allclose(start, fit.theta, rtol=1e-5)
    assert fit.n_evals <= 3


def test_unbalanced_crossed_intercepts_start_near_the_optimum() -> None:
    # each of 300 subjects sees 12 of 80 items: the joint estimates start within a few
    # percent, where one analysis per factor counted the other factor's variance as residual
    from lmmfast.api import prepare
    from lmmfast.start import _intercept_ratio, initial_theta

    data = lmmfast.datasets.simulate_crossed(300, 80, 12, slopes=False, seed=4)
    formula = "y ~ cond + freq + (1 | subj) + (1 | item)"
    prepared = prepare(formula, data, reml=False)
    cp = prepared.objective.cross_products
    start = initial_theta(prepared.layout, prepared.terms, cp, prepared.engine.blocks)
    fit = lmmfast.lmm(formula, data, reml=False)
    np.testing.assert_allclose(start, fit.theta, rtol=0.05)
    # the one-way estimate of the items' sd is several times further off
    p = cp.p
    beta = np.linalg.solve(cp.XytXy[:p, :p], cp.XytXy[:p, p])
    residual_ss = float(cp.XytXy[p, p] - beta @ cp.XytXy[:p, p])
    item = int(np.flatnonzero(cp.term_levels == 80)[0])
    rows = slice(int(cp.column_offsets[item]), int(cp.column_offsets[item]) + 80)
    counts = np.bincount(prepared.terms[item].codes, minlength=80).astype(float)
    one_way = _intercept_ratio(counts, cp.ZtXy[rows, p] - cp.ZtXy[rows, :p] @ beta, residual_ss, cp.n)
    assert abs(one_way - fit.theta[item]) > 3 * abs(start[item] - fit.theta[item])


def test_confounded_intercepts_fall_back_to_one_way_estimates() -> None:
    # two grouping columns with the same levels under other names: the joint equations are
    # singular, and each term gets its own one-way estimate
    from lmmfast.api import prepare
    from lmmfast.start import START_RANGE, initial_theta

    data = lmmfast.datasets.load("dyestuff").assign(Copy=lambda d: "c" + d["Batch"].astype(str))
    prepared = prepare("Yield ~ 1 + (1 | Batch) + (1 | Copy)", data)
    start = initial_theta(prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks)
    assert start[0] == start[1]
    assert START_RANGE[0] <= start[0] <= START_RANGE[1]


def test_models_with_slopes_keep_lme4_start() -> None:
    from lmmfast.api import prepare
    from lmmfast.start import initial_theta

    prepared = prepare("Reaction ~ Days + (Days || Subject)", lmmfast.datasets.load("sleepstudy"))
    start = initial_theta(prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks)
    np.testing.assert_array_equal(start, prepared.layout.start)


def test_automatic_choice_of_optimizer() -> None:
    sleep = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    assert sleep.optsummary.algorithm == "NLOPT_LD_LBFGS"  # a compiled criterion and its gradient
    kb07 = lmmfast.lmm(
        "RTtrunc ~ 1 + S + P + C + (1 + S + P | subj) + (1 + P | item)",
        lmmfast.datasets.load("kb07"),
        reml=False,
        checks={"singular": "ignore"},
    )
    assert kb07.optsummary.algorithm == "L-BFGS-B" and kb07.converged
    # θ within lme4's bounds even though L-BFGS-B searched without them
    assert np.all(kb07.theta[kb07.model.layout.is_diagonal] >= 0.0)


def test_lbfgsb_falls_back_to_bobyqa_when_its_line_search_fails() -> None:
    layout = ThetaLayout.from_sizes([1])

    def value_and_wrong_gradient(theta):
        return float((theta[0] - 2.0) ** 2), np.array([1.0])  # points uphill: the line search fails

    summary = optimize_theta(lambda t: (t[0] - 2.0) ** 2, layout, value_and_gradient=value_and_wrong_gradient)
    assert summary.algorithm == "L-BFGS-B+NLOPT_LN_BOBYQA"
    assert summary.final[0] == pytest.approx(2.0, abs=1e-4) and summary.converged


def test_nlopt_lbfgs_falls_back_to_bobyqa_when_it_fails() -> None:
    layout = ThetaLayout.from_sizes([1])

    def value_and_wrong_gradient(theta):
        return float((theta[0] - 2.0) ** 2), np.array([1.0])

    def wrong_gradient_into(theta, out):
        value, out[:] = value_and_wrong_gradient(theta)
        return value

    summary = optimize_theta(
        lambda t: (t[0] - 2.0) ** 2,
        layout,
        value_and_gradient=value_and_wrong_gradient,
        gradient_into=wrong_gradient_into,
    )
    assert summary.algorithm == "NLOPT_LD_LBFGS+NLOPT_LN_BOBYQA"
    assert summary.final[0] == pytest.approx(2.0, abs=1e-4) and summary.converged


def test_small_models_run_nlopt_lbfgs_on_the_compiled_gradient() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    bobyqa = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"), optimizer="bobyqa")
    assert fit.optsummary.algorithm == "NLOPT_LD_LBFGS" and fit.converged
    assert fit.optsummary.n_evals < bobyqa.optsummary.n_evals / 2
    assert fit.objective <= bobyqa.objective + 1e-10 * bobyqa.objective
    np.testing.assert_allclose(fit.theta, bobyqa.theta, rtol=1e-4)


def test_quasi_newton_check_needs_no_evaluation_and_flags_a_large_step() -> None:
    from lmmfast.convergence import check_convergence

    layout = ThetaLayout.from_sizes([1, 1])

    def no_calls(theta):
        raise AssertionError("the quasi-Newton check must not evaluate the objective")

    theta = np.array([0.5, 0.7])
    small = check_convergence(no_calls, layout, theta, 1.0, (np.array([1e-3, -1e-3]), np.eye(2)))
    assert small.ok and small.n_evals == 0 and small.predicted_decrease == pytest.approx(1e-6)
    large = check_convergence(no_calls, layout, theta, 1.0, (np.array([0.1, 0.0]), np.eye(2)))
    assert not large.ok and "quasi-Newton step" in large.message


def test_lbfgsb_fit_is_checked_from_its_own_gradient() -> None:
    fit = lmmfast.lmm(
        "RTtrunc ~ 1 + S + P + (1 | subj) + (1 + P | item)",
        lmmfast.datasets.load("kb07"),
        reml=False,
        optimizer="lbfgsb",
    )
    assert fit.convergence is not None and fit.convergence.ok and fit.convergence.n_evals == 0
    _, gradient = fit.model.objective.value_and_gradient(fit.theta)
    np.testing.assert_allclose(fit.optsummary.gradient, gradient, atol=1e-8)


def test_boundary_fit_by_lbfgsb_checks_free_theta_by_gradient_and_boundary_theta_one_sided() -> None:
    fit = lmmfast.lmm(
        "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1+S+P+C | subj) + (1+S+P+C | item)",
        lmmfast.datasets.load("kb07"),
        reml=False,
        checks={"singular": "ignore"},
    )
    check = fit.convergence
    assert fit.optsummary.snapped and check.ok
    assert check.n_evals == int(np.sum(~check.free)) == len(fit.optsummary.snapped)
    _, gradient = fit.model.objective.value_and_gradient(fit.theta)
    np.testing.assert_allclose(check.gradient, gradient, atol=1e-8)
    assert 0.0 <= check.predicted_decrease < 1e-3


def test_gradient_path_starts_from_moment_covariances_closer_to_the_optimum() -> None:
    from lmmfast.api import prepare
    from lmmfast.start import initial_theta

    data = lmmfast.datasets.simulate_crossed(400, 300, 100, seed=3)
    formula = "y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)"
    prepared = prepare(formula, data, reml=False)
    start = initial_theta(
        prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks, slopes=True
    )
    # the simulated templates are [0.667, 0.075, 0.238] for subjects (sd 40 and 15, correlation
    # 0.3, σ 60) and [0.417, -0.033, 0.163] for items (sd 25 and 10, correlation -0.2): moments
    # of per-level fits land near them once the other factor's variance is taken out of σ²
    # (the OLS residuals' variance, 5,900 against σ² = 3,600, would start at 0.50 and 0.30)
    np.testing.assert_allclose(start, [0.667, 0.075, 0.238, 0.417, -0.033, 0.163], atol=0.05)
    assert prepared.objective(start) < prepared.objective(prepared.layout.start) - 100.0
    fit = lmmfast.lmm(formula, data, reml=False)
    np.testing.assert_array_equal(fit.optsummary.initial, start)
    from_identity = optimize_theta(
        prepared.objective, prepared.layout, value_and_gradient=prepared.objective.value_and_gradient
    )
    assert fit.objective == pytest.approx(from_identity.final_objective, rel=1e-10)
    assert fit.n_evals < from_identity.n_evals


def test_moment_start_keeps_identity_for_a_term_no_level_can_estimate() -> None:
    from lmmfast.api import prepare
    from lmmfast.start import initial_theta

    # a slope constant within each subject: no subject's own fit of (1 + slope) has full rank
    data = lmmfast.datasets.load("sleepstudy").assign(group_constant=lambda d: d.Subject.astype(int) % 3)
    prepared = prepare("Reaction ~ Days + (1 + group_constant | Subject)", data)
    start = initial_theta(
        prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks, slopes=True
    )
    np.testing.assert_array_equal(start, prepared.layout.start)


def test_lbfgsb_first_step_goes_to_the_minimum_of_the_probed_parabola() -> None:
    # from θ = 1 L-BFGS-B's own first step (length 1) would land at 2, 45 units up; one probe
    # 0.1 down the gradient fixes the parabola, whose minimum is the objective's
    layout = ThetaLayout.from_sizes([1])

    def objective(theta):
        return float(50.0 * (theta[0] - 1.05) ** 2)

    def value_and_gradient(theta):
        return objective(theta), np.array([100.0 * (theta[0] - 1.05)])

    summary = optimize_theta(objective, layout, start=np.array([1.0]), value_and_gradient=value_and_gradient)
    assert summary.trace_theta[1, 0] == pytest.approx(1.1)  # the probe, recorded
    assert summary.trace_theta[2, 0] == pytest.approx(1.05)  # the first step
    assert summary.final[0] == pytest.approx(1.05) and summary.converged
    assert np.all(summary.trace_theta[:, 0] < 1.2)


def test_lbfgsb_keeps_its_last_point_when_an_earlier_one_is_lower_only_by_rounding() -> None:
    # penicillin by ML on the factor (SciPy's L-BFGS-B): its last point is a hair above an
    # earlier one; taking it keeps its gradient and curvature, so the convergence check needs
    # no finite differences
    prepared = prepare(
        "diameter ~ 1 + (1 | plate) + (1 | sample)",
        lmmfast.datasets.load("penicillin"),
        reml=False,
        control=lmmfast.Control(optimizer="lbfgsb"),
    )
    prepared.objective.envelope = None
    fit = fit_prepared(prepared)
    assert fit.optsummary.algorithm == "L-BFGS-B"
    assert fit.optsummary.gradient is not None
    assert fit.convergence is not None and fit.convergence.ok and fit.convergence.n_evals == 0
    assert fit.objective <= fit.optsummary.trace_objective.min() + 1e-8


def _pseudo_huber_with_gradient_flipped_within(radius: float):
    """Σ w(√(1 + (θ − 1)²) − 1), whose gradient turns uphill within ``radius`` of the optimum
    (as rounding turns a gradient that small): L-BFGS-B's line search fails there."""
    weights = np.array([1.0, 3.0])

    def value(theta):
        return float(np.sum(weights * (np.sqrt(1.0 + (theta - 1.0) ** 2) - 1.0)))

    def value_and_gradient(theta):
        gradient = weights * (theta - 1.0) / np.sqrt(1.0 + (theta - 1.0) ** 2)
        return value(theta), (-gradient if np.max(np.abs(theta - 1.0)) < radius else gradient)

    return value, value_and_gradient


def test_lbfgsb_failing_its_line_search_where_nothing_is_left_to_gain_has_converged() -> None:
    value, value_and_gradient = _pseudo_huber_with_gradient_flipped_within(3e-4)
    summary = optimize_theta(
        value, ThetaLayout.from_sizes([1, 1]), start=np.array([0.2, 2.5]), value_and_gradient=value_and_gradient
    )
    # without the rule BOBYQA took over for 26 more evaluations
    assert summary.algorithm == "L-BFGS-B" and summary.converged
    assert summary.return_code.startswith("ABNORMAL") and "settled" in summary.return_code
    assert summary.final == pytest.approx([1.0, 1.0], abs=3e-4)


def test_lbfgsb_failing_its_line_search_far_from_the_optimum_hands_over_to_bobyqa() -> None:
    value, value_and_gradient = _pseudo_huber_with_gradient_flipped_within(0.1)
    summary = optimize_theta(
        value, ThetaLayout.from_sizes([1, 1]), start=np.array([0.2, 2.5]), value_and_gradient=value_and_gradient
    )
    assert summary.algorithm == "L-BFGS-B+NLOPT_LN_BOBYQA" and summary.converged
    assert summary.final == pytest.approx([1.0, 1.0], abs=1e-4)


def test_steps_below_the_objectives_resolution_are_answered_without_evaluating() -> None:
    from lmmfast.recorder import Recorder

    calls = []

    def value_and_gradient(theta):
        calls.append(theta.copy())
        return 1e6 + float(theta @ theta), 2.0 * theta

    recorder = Recorder(lambda t: value_and_gradient(t)[0], value_and_gradient)
    start = np.array([0.5, 0.25])
    first = recorder.with_gradient(start)
    nearby = start + np.array([1e-12, -1e-12])
    assert recorder.with_gradient(nearby)[0] == first[0]
    assert len(calls) == 1 and recorder.count == 1
    assert np.array_equal(recorder.evaluated_point(nearby), start)
    farther = start + np.array([1e-6, 0.0])  # longer than MAX_UNRESOLVED_STEP: evaluated
    recorder.with_gradient(farther)
    assert len(calls) == 2 and recorder.count == 2
    assert np.array_equal(recorder.evaluated_point(farther), farther)


def test_lbfgsb_goes_on_where_its_relative_tolerance_stops_it_short_of_the_optimum() -> None:
    """A criterion of 10⁷ in a narrow valley: L-BFGS-B's relative tolerance (an iteration
    gaining under 1e-11 of it, 1e-4) stopped it 0.013 above the minimum, where a Newton step
    still promised 0.0014; run again until that promise is at the objective's rounding
    (``settled_decrease``: 1e-5 at this size), it ends within 1e-6."""
    from lmmfast.lbfgsb import settled_decrease

    layout = ThetaLayout.from_sizes([2])
    valley = 50.0 * np.array([[1.0, 0.999, 0.0], [0.999, 1.0, 0.0], [0.0, 0.0, 1.0]])
    center = np.array([0.7, 0.3, 0.4])

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta - center
        gradient = 2.0 * valley @ d
        gradient[0] += 2.0 * d[0] ** 3
        return 1e7 + float(d @ valley @ d) + 0.5 * d[0] ** 4, gradient

    summary = optimize_theta(
        lambda theta: value_and_gradient(theta)[0],
        layout,
        start=np.array([1.0, 0.0, 1.0]),
        value_and_gradient=value_and_gradient,
    )
    assert summary.converged
    assert summary.final_objective - 1e7 < 1e-6
    gradient, inverse = summary.gradient, summary.inverse_hessian
    assert settled_decrease(summary.final_objective) == pytest.approx(1e-5)
    assert 0.5 * gradient @ inverse @ gradient <= settled_decrease(summary.final_objective)


def _moment_start_from_rows(prepared) -> np.ndarray:
    """The moment start as the rows give it: per level of each grouping factor, the
    least-squares fit of the OLS residuals on all the factor's columns; their covariance less
    the mean sampling covariance at the pooled within-level residual variance; templates
    relative to the OLS residual variance less every term's average share of it."""
    X, y = prepared.fixed.X, prepared.fixed.y
    n = len(y)
    residuals = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    sigma2 = residuals @ residuals / (n - X.shape[1])
    by_group = {}
    for index, term in enumerate(prepared.terms):
        by_group.setdefault(term.group, []).append(index)
    covariances, shares = {}, []
    for indices in by_group.values():
        terms = [prepared.terms[i] for i in indices]
        Z = np.hstack([term.values for term in terms])
        fits, inverses, explained = [], [], 0.0
        for level in range(terms[0].n_levels):
            rows = terms[0].codes == level
            gram = Z[rows].T @ Z[rows]
            fit = np.linalg.solve(gram, Z[rows].T @ residuals[rows])
            fits.append(fit)
            inverses.append(np.linalg.inv(gram))
            explained += fit @ (Z[rows].T @ residuals[rows])
        within = (residuals @ residuals - explained) / (n - len(fits) * Z.shape[1])
        covariance = np.atleast_2d(np.cov(np.array(fits).T, ddof=1)) - within * np.mean(inverses, axis=0)
        first = 0
        for i, term in zip(indices, terms):
            own = slice(first, first + term.k)
            covariances[i] = covariance[own, own]
            shares.append(np.sum(covariances[i] * (term.values.T @ term.values)) / n)
            first += term.k
    residual = sigma2 - sum(shares)
    layout = prepared.layout
    start = layout.start
    for index in range(len(prepared.terms)):
        values, vectors = np.linalg.eigh(covariances[index] / residual)
        template = np.linalg.cholesky((vectors * np.maximum(values, 1e-4)) @ vectors.T)
        mask = layout.term_of == index
        start[mask] = template[layout.rows[mask], layout.cols[mask]]
    return start


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + (Days | Subject)",
        # two terms on one factor, merged into one engine term: each reads its own sub-blocks
        "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    ],
)
def test_the_moment_start_from_cross_products_is_the_rows_own(formula) -> None:
    from lmmfast.api import prepare
    from lmmfast.start import initial_theta

    prepared = prepare(formula, lmmfast.datasets.load("sleepstudy"))
    start = initial_theta(
        prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks, slopes=True
    )
    np.testing.assert_allclose(start, _moment_start_from_rows(prepared), rtol=1e-8, atol=1e-12)


def _nlopt_on_pseudo_huber(radius: float):
    """NLopt's L-BFGS (a ``gradient_into``) on the same function, from (0.2, 2.5)."""
    value, value_and_gradient = _pseudo_huber_with_gradient_flipped_within(radius)

    def gradient_into(theta, out):
        result, out[:] = value_and_gradient(theta)
        return result

    return optimize_theta(
        value,
        ThetaLayout.from_sizes([1, 1]),
        start=np.array([0.2, 2.5]),
        value_and_gradient=value_and_gradient,
        gradient_into=gradient_into,
    )


def test_nlopt_lbfgs_failing_where_nothing_is_left_to_gain_has_converged() -> None:
    summary = _nlopt_on_pseudo_huber(3e-4)
    assert summary.algorithm == "NLOPT_LD_LBFGS" and summary.converged
    assert "settled" in summary.return_code
    assert summary.final == pytest.approx([1.0, 1.0], abs=3e-4)


def test_nlopt_lbfgs_failing_far_from_the_optimum_hands_over_to_bobyqa() -> None:
    summary = _nlopt_on_pseudo_huber(0.1)
    assert summary.algorithm == "NLOPT_LD_LBFGS+NLOPT_LN_BOBYQA" and summary.converged
    assert summary.final == pytest.approx([1.0, 1.0], abs=1e-4)


@pytest.mark.filterwarnings("ignore::lmmfast.SingularFitWarning")
def test_refits_whose_line_search_stalls_reach_bobyqas_optimum() -> None:
    """pastes' refits often end with NLopt's line search sampling rounding (a variance at 0,
    or a flat optimum): stopped after five such evaluations and settled by differences, they
    end where BOBYQA does."""
    data = lmmfast.datasets.load("pastes")
    formula = "strength ~ 1 + (1 | batch/cask)"
    fit = lmmfast.lmm(formula, data)
    stalled = 0
    for seed in range(10):
        y = fit.simulate(1, seed=seed)[:, 0]
        refit = fit.refit(y)
        bobyqa = lmmfast.lmm(formula, data.assign(strength=y), optimizer="bobyqa")
        stalled += refit.optsummary.return_code.startswith("STALLED (settled")
        assert refit.converged and refit.optsummary.algorithm == "NLOPT_LD_LBFGS"
        assert refit.objective <= bobyqa.objective * (1 + 1e-11)
    assert stalled >= 2


def test_nlopt_lbfgs_hands_an_infeasible_start_to_bobyqa() -> None:
    """Where nothing near the start can be evaluated the slope is 0, which NLopt's L-BFGS
    would take for an optimum; BOBYQA searches on instead."""
    from lmmfast.objective import INFEASIBLE

    def value_and_gradient(theta):
        if theta[0] > 5.0:
            return INFEASIBLE, np.zeros(1)
        return float((theta[0] - 1.0) ** 2), np.array([2.0 * (theta[0] - 1.0)])

    def gradient_into(theta, out):
        result, out[:] = value_and_gradient(theta)
        return result

    summary = optimize_theta(
        lambda t: value_and_gradient(t)[0],
        ThetaLayout.from_sizes([1]),
        start=np.array([8.0]),
        value_and_gradient=value_and_gradient,
        gradient_into=gradient_into,
    )
    assert summary.algorithm == "NLOPT_LD_LBFGS+NLOPT_LN_BOBYQA"


def _hessian_diagonal(objective, theta: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """The objective's Hessian diagonal by central differences of its analytic gradient."""
    diagonal = np.empty(len(theta))
    for i in range(len(theta)):
        step = np.zeros(len(theta))
        step[i] = h
        up, down = objective.value_and_gradient(theta + step)[1], objective.value_and_gradient(theta - step)[1]
        diagonal[i] = (up[i] - down[i]) / (2 * h)
    return diagonal


@pytest.mark.parametrize(
    ("dataset", "formula", "rtol"),
    [
        # crossed, slopes on both factors: many levels, the per-level information is close
        ("crossed", "y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)", 0.05),
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", 0.1),
        ("kb07", "RTtrunc ~ 1 + S + P + C + (1 | subj) + (1 + P | item)", 0.1),
        # 3 rows a subject: σ profiled out takes a third off the subjects' curvature with σ held
        ("few rows a level", "y ~ cond + freq + (1 | subj) + (1 | item)", 0.05),
    ],
)
def test_start_curvature_is_the_hessian_diagonal_near_the_optimum(dataset, formula, rtol) -> None:
    from lmmfast.api import prepare
    from lmmfast.curvature import start_curvature

    if dataset == "crossed":
        data = lmmfast.datasets.simulate_crossed(300, 200, 60, seed=2)
    elif dataset == "few rows a level":
        data = lmmfast.datasets.simulate_crossed(20_000, 2_000, 3, slopes=False, popularity=1.0, seed=1)
    else:
        data = lmmfast.datasets.load(dataset)
    prepared = prepare(formula, data, reml=False)
    theta = lmmfast.lmm(formula, data, reml=False).theta
    approximate = start_curvature(
        prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks, theta
    )
    np.testing.assert_allclose(approximate, _hessian_diagonal(prepared.objective, theta), rtol=rtol)


def test_the_start_curvature_scales_lbfgsb_for_fewer_evaluations_than_a_probe() -> None:
    from lmmfast.api import prepare

    data = lmmfast.datasets.simulate_crossed(300, 200, 60, seed=2)
    formula = "y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)"
    fit = lmmfast.lmm(formula, data, reml=False)
    assert fit.optsummary.algorithm == "L-BFGS-B"
    prepared = prepare(formula, data, reml=False)
    probed = optimize_theta(
        prepared.objective,
        prepared.layout,
        start=fit.optsummary.initial,
        value_and_gradient=prepared.objective.value_and_gradient,
    )
    assert fit.objective == pytest.approx(probed.final_objective, rel=1e-11)
    assert fit.n_evals <= probed.n_evals - 3


def test_lbfgsb_scaled_by_a_curvature_stops_where_its_newton_step_would_gain_nothing() -> None:
    """On θ scaled by the diagonal curvature, the first step is that diagonal's Newton step:
    on a diagonal quadratic it lands at the minimum, where the run stops at once (not after
    a line search through the criterion's rounding) and says why."""
    layout = ThetaLayout.from_sizes([1, 1])
    center, curvature = np.array([0.7, 0.3]), np.array([4e4, 9e2])

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta - center
        return 1e7 + 0.5 * float(curvature @ d**2), curvature * d

    summary = optimize_theta(
        lambda theta: value_and_gradient(theta)[0],
        layout,
        start=np.array([0.6, 0.5]),
        value_and_gradient=value_and_gradient,
        curvature=curvature,
    )
    assert summary.converged
    assert summary.return_code.startswith("CONVERGENCE: A NEWTON STEP ON THE SCALING CURVATURE WOULD GAIN UNDER")
    assert summary.n_evals == 2  # the start and the Newton step
    np.testing.assert_allclose(summary.final, center, atol=1e-9)


@pytest.mark.parametrize("optimizer", ["L-BFGS-B", "NLopt"])
def test_a_whole_hessian_takes_quasi_newton_runs_to_a_correlated_minimum_at_once(optimizer) -> None:
    """Given the whole Hessian (a nearby optimum's, measured), the run works where it is the
    identity: on a quadratic with strongly correlated θ, the first step of either optimiser
    is the Newton step onto the minimum (its diagonal alone takes NLopt 7 evaluations)."""
    from lmmfast.lbfgsb import run_nlopt_lbfgs
    from lmmfast.recorder import Recorder

    layout = ThetaLayout.from_sizes([1, 1])
    center, hessian = np.array([0.7, 0.3]), np.array([[4e4, 5.7e3], [5.7e3, 9e2]])

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta - center
        return 1e7 + 0.5 * float(d @ hessian @ d), hessian @ d

    start = np.array([0.6, 0.5])
    if optimizer == "L-BFGS-B":
        summary = optimize_theta(
            lambda theta: value_and_gradient(theta)[0],
            layout,
            start=start,
            value_and_gradient=value_and_gradient,
            curvature=hessian,
        )
        assert summary.converged and summary.n_evals == 2
        np.testing.assert_allclose(summary.final, center, atol=1e-9)
        return

    def gradient_into(theta: np.ndarray, out: np.ndarray) -> float:
        value, gradient = value_and_gradient(theta)
        out[:] = gradient
        return value

    recorder = Recorder(lambda theta: value_and_gradient(theta)[0], value_and_gradient, None)
    recorder.with_gradient(start)
    _, converged = run_nlopt_lbfgs(recorder, start, Control(), layout, gradient_into, curvature_root(hessian))
    assert converged and recorder.count == 2
    np.testing.assert_allclose(recorder.best_x, center, atol=1e-6)


def test_start_curvature_leaves_wide_factors_and_the_boundary_without_an_estimate() -> None:
    """No diagonal for θ of a grouping factor with more than two columns (its information is
    far from diagonal), nor near the boundary, where the information vanishes though the
    curvature does not: those entries are NaN, and the optimiser gives them another scale."""
    from lmmfast.api import prepare
    from lmmfast.curvature import start_curvature

    kb07 = lmmfast.datasets.load("kb07")
    prepared = prepare("RTtrunc ~ S + P + C + (1 + S + P | subj) + (1 | item)", kb07, reml=False)
    theta = prepared.layout.start
    curvature = start_curvature(
        prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks, theta
    )
    wide = prepared.layout.term_of == 0
    assert np.all(np.isnan(curvature[wide])) and np.all(curvature[~wide] > 0)
    sleep = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    near_zero = np.array([1.0, 0.0, 1e-6])  # the slope's own column at 0
    curvature = start_curvature(
        sleep.layout, sleep.terms, sleep.objective.cross_products, sleep.engine.blocks, near_zero
    )
    assert np.isnan(curvature[2]) and np.all(curvature[:2] > 0)


def test_start_curvature_counts_what_nested_levels_cannot_separate() -> None:
    """InstEval's lecturers sit within departments: a department's estimate holds their
    variance too, which its own rows cannot separate. Counting it, with the lecturers' cells
    weighed by their precision, brings the departments' curvature within 10% of the
    Hessian's (2.5× too large without it, half weighed by rows)."""
    from lmmfast.api import prepare
    from lmmfast.curvature import start_curvature

    data = lmmfast.datasets.load("insteval")
    formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"
    prepared = prepare(formula, data, reml=False)
    theta = lmmfast.lmm(formula, data, reml=False).theta
    approximate = start_curvature(
        prepared.layout, prepared.terms, prepared.objective.cross_products, prepared.engine.blocks, theta
    )
    np.testing.assert_allclose(approximate, _hessian_diagonal(prepared.objective, theta), rtol=0.1)
