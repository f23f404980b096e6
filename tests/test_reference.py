"""Agreement with lme4 1.1-31 on the reference cases, to the tolerances the README states."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import REFERENCE, case_data, r_name, reference_cases, reference_fit

import lmmfast
from lmmfast.api import prepare

CASES = [
    *reference_cases(),
    {
        "id": "sleepstudy_weighted",
        "data": "sleepstudy_weighted.csv",
        "formula": "Reaction ~ Days + (Days | Subject)",
        "criterion": "REML",
        "folder": str(REFERENCE),
    },
]

#: Cases whose objective is so flat that lme4's own estimates move by more than 1e-3 when its
#: tolerances are tightened (checked with lmerControl(optCtrl = list(xtol_abs = 1e-12,
#: ftol_abs = 1e-12))): there we require our objective to be at least as low as lme4's and
#: the variance components to agree to 1e-2. orthodont_slopes: lme4 stops 5.5e-6 above the
#: optimum we find; kb07_zcp: item.SC moves from 736.5 to 736.0 under tighter tolerances.
FLAT = {"orthodont_slopes", "kb07_zcp"}

#: Cases where lme4 stops clearly short of the optimum (its objective is higher than ours by
#: far more than its tolerance), so its estimates are not a target: kb07_slopes20 (20 θ,
#: singular): lme4's deviance is 0.027 above ours after 667 evaluations. There the test asks
#: for a strictly lower objective and the fixed effects to agree to 1e-3.
LME4_SHORT = {"kb07_slopes20"}


def _fit(case: dict[str, str], optimizer: str = "auto") -> lmmfast.LmmResult:
    data = case_data(case)
    weights = "w" if case["id"] == "sleepstudy_weighted" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmfast.SingularFitWarning)
        return lmmfast.lmm(
            case["formula"],
            data,
            reml=case["criterion"] == "REML",
            weights=weights,
            optimizer=optimizer,
        )


@pytest.fixture(scope="module", params=CASES, ids=[c["id"] for c in CASES])
def fitted(request: pytest.FixtureRequest) -> tuple[dict, lmmfast.LmmResult, dict[str, str]]:
    case = request.param
    return reference_fit(case), _fit(case), case


def test_objective_at_lme4_theta_equals_lme4_objective(fitted) -> None:
    ref, _, case = fitted
    data = case_data(case)
    weights = "w" if case["id"] == "sleepstudy_weighted" else None
    prepared = prepare(case["formula"], data, reml=case["criterion"] == "REML", weights=weights)
    value = prepared.objective(np.asarray(ref["theta"]))
    assert value == pytest.approx(ref["objective"], rel=1e-10)


def test_objective_at_least_as_low_as_lme4(fitted) -> None:
    ref, fit, _ = fitted
    assert fit.objective - ref["objective"] <= 1e-6 * abs(ref["objective"])
    if ref["id"] in LME4_SHORT:
        assert fit.objective < ref["objective"] - 1e-3
    assert fit.converged


@pytest.mark.parametrize("optimizer", ["bobyqa", "lbfgsb"])
def test_each_optimizer_reaches_the_automatic_optimum(fitted, optimizer) -> None:
    ref, fit, case = fitted
    if optimizer == "lbfgsb" and not fit.model.objective.has_gradient:
        pytest.skip("this model takes the CHOLMOD path, which has no analytic gradient")
    if optimizer == "bobyqa" and ref["id"] in LME4_SHORT:
        pytest.skip("BOBYQA stops in a boundary corner on this model, as lme4 does")
    other = _fit(case, optimizer)
    assert other.objective == pytest.approx(fit.objective, rel=1e-8, abs=1e-7)
    # a compiled criterion's gradient drives NLopt's L-BFGS, the factor's SciPy's L-BFGS-B
    quasi_newton = "NLOPT_LD_LBFGS" if fit.model.objective.envelope is not None else "L-BFGS-B"
    assert other.optsummary.algorithm.startswith(quasi_newton if optimizer == "lbfgsb" else "NLOPT_LN_BOBYQA")


def test_fixed_effects_and_standard_errors(fitted) -> None:
    ref, fit, _ = fitted
    assert [r_name(n) for n in fit.fixef.index] == ref["fixef"]["names"]
    if ref["id"] in LME4_SHORT:
        np.testing.assert_allclose(fit.fixef.to_numpy(), ref["fixef"]["estimate"], rtol=1e-3)
        return
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref["fixef"]["estimate"], rtol=1e-4, atol=1e-10)
    rtol = 1e-2 if ref["id"] in FLAT else 1e-3
    np.testing.assert_allclose(fit.stderr.to_numpy(), ref["fixef"]["se"], rtol=rtol)


def test_variance_components(fitted) -> None:
    ref, fit, _ = fitted
    mine = fit.varcorr
    rows = ref["varcorr"]
    assert list(mine.grp) == [r["grp"] for r in rows]
    assert [v and r_name(v) for v in mine.var1] == [r.get("var1") for r in rows]
    assert [v and r_name(v) for v in mine.var2] == [r.get("var2") for r in rows]
    if ref["id"] in LME4_SHORT:
        return
    rtol = 1e-2 if ref["id"] in FLAT else 1e-3
    sigma = ref["sigma"]
    for got, want in zip(mine.itertuples(index=False), rows):
        if want.get("var2") is None:  # a standard deviation; zero ones compare on σ's scale
            assert got.sdcor == pytest.approx(want["sdcor"], rel=rtol, abs=1e-3 * sigma), got
        else:  # a correlation
            assert got.sdcor == pytest.approx(want["sdcor"], abs=rtol), got
    assert fit.sigma == pytest.approx(sigma, rel=1e-3)


def test_likelihood_summaries(fitted) -> None:
    ref, fit, _ = fitted
    assert fit.nobs == ref.get("nobs", fit.nobs)
    assert fit.npar == ref.get("df", len(fit.beta) + len(fit.theta) + 1)
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert fit.bic == pytest.approx(ref["BIC"], rel=1e-6)
    assert fit.singular == ref["singular"]
    if "ngrps" in ref:
        assert fit.ngrps == ref["ngrps"]


def test_theta_names_follow_lme4(fitted) -> None:
    ref, fit, _ = fitted
    if "theta_names" not in ref:
        pytest.skip("this reference fit does not record θ names")
    assert [r_name(n) for n in fit.theta_names] == ref["theta_names"]


def test_conditional_modes(fitted) -> None:
    ref, fit, _ = fitted
    if "ranef" not in ref:
        pytest.skip("this reference fit does not record conditional modes")
    if ref["id"] in LME4_SHORT:
        pytest.skip("lme4 stopped short of the optimum; its modes are not a target")
    rtol = 1e-2 if ref["id"] in FLAT else 2e-3
    for group, rows in ref["ranef"].items():
        mine = fit.ranef[group]
        scale = max(np.abs(mine.to_numpy()).max(), 1e-12)
        for row in rows:
            level = row["level"]
            for column, value in row.items():
                if column in ("level", "_row"):
                    continue
                mine_column = next(c for c in mine.columns if r_name(c) == column)
                assert mine.loc[level, mine_column] == pytest.approx(value, rel=rtol, abs=rtol * scale), (group, level)
