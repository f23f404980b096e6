"""Profile-likelihood and bootstrap intervals against lme4."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import case_data, r_name, reference_cases, reference_fit

import lmmfast

CASES = [c for c in reference_cases() if "confint_profile" in reference_fit(c)]


def _close(mine: float, theirs: float) -> bool:
    """1e-3 relative; 1e-3 absolute near 0 (below 0.01) and at the ±1 limits of a correlation."""
    if abs(theirs) < 1e-2 or abs(abs(theirs) - 1) < 1e-9:
        return abs(mine - theirs) <= 1e-3
    return abs(mine - theirs) <= 1e-3 * abs(theirs)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_profile_intervals_match_lme4(case) -> None:
    ref = reference_fit(case)["confint_profile"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmfast.SingularFitWarning)
        fit = lmmfast.lmm(case["formula"], case_data(case), reml=case["criterion"] == "REML")
    intervals = fit.confint(method="profile")
    assert [r_name(n) for n in intervals.index] == ref["names"]
    for name, lower, upper in zip(intervals.index, ref["lower"], ref["upper"]):
        assert _close(intervals.loc[name, "lower"], lower), (name, intervals.loc[name, "lower"], lower)
        assert _close(intervals.loc[name, "upper"], upper), (name, intervals.loc[name, "upper"], upper)


def test_orthodont_correlation_profile_is_monotonic() -> None:
    """lme4 warns that its profile of this correlation is non-monotonic near the boundary;
    ours rises monotonically through the interval (and gives the same −1 and 1 limits)."""
    fit = lmmfast.lmm("distance ~ age * Sex + (age | Subject)", lmmfast.datasets.load("orthodont"))
    from lmmfast.inference.profile import _Profiler

    profiler = _Profiler(fit)
    index = profiler.scale.names.index("cor_age.(Intercept)|Subject")
    estimate = profiler.phi_hat[index]
    values = np.linspace(-0.99, 0.99, 23)
    zetas = np.array([profiler.zeta("var", index, v, estimate) for v in values])
    assert np.all(np.diff(zetas) >= -1e-6)


def test_profile_traces_cross_zero_at_the_estimate() -> None:
    fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    traces = fit.profile(points=5)
    assert list(traces.columns) == ["parameter", "value", "zeta"]
    for name, trace in traces.groupby("parameter"):
        assert np.all(np.diff(trace.zeta) > 0)
        assert trace.zeta.iloc[-1] == pytest.approx(2.5758, abs=1e-3)
        if name.startswith("sd_") and trace.value.iloc[0] == 0.0:
            assert trace.zeta.iloc[0] > -2.5758  # the 99% interval reaches the boundary
        else:
            assert trace.zeta.iloc[0] == pytest.approx(-2.5758, abs=1e-3)


def test_bootstrap_intervals_cover_the_estimates_and_are_reproducible() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    percentile = fit.confint(method="boot", n=60, seed=4)
    shortest = fit.confint(method="boot", n=60, seed=4, boot_type="shortest")
    assert list(percentile.index) == [
        "sd_(Intercept)|Subject",
        "cor_Days.(Intercept)|Subject",
        "sd_Days|Subject",
        "sigma",
        "Intercept",
        "Days",
    ]
    assert np.all(percentile.lower < percentile.upper)
    assert np.all((shortest.upper - shortest.lower) <= (percentile.upper - percentile.lower) + 1e-12)
    assert percentile.loc["Days", "lower"] < fit.fixef["Days"] < percentile.loc["Days", "upper"]
    assert percentile.equals(fit.confint(method="boot", n=60, seed=4))
    with pytest.raises(lmmfast.ArgumentError, match="'percentile' or 'shortest'"):
        fit.confint(method="boot", n=5, boot_type="bca")


def test_profile_shows_a_bar_over_its_parameters_when_asked(capsys) -> None:
    fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    quiet = fit.confint(method="profile")
    assert capsys.readouterr().err == ""
    shown = fit.confint(method="profile", progress=True)
    assert "profile" in capsys.readouterr().err
    pd.testing.assert_frame_equal(quiet, shown)
