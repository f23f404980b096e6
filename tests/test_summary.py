"""lme4's printed summary, with Satterthwaite columns when cheap, and the verbose engine lines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import SLEEPSTUDY_SLOPES

import lmmfast

F = SLEEPSTUDY_SLOPES


def test_summary_has_lme4_sections(fit) -> None:
    text = fit.summary()
    for piece in [
        "Linear mixed model fit by REML ['lmerMod']",
        "Formula: Reaction ~ Days + (Days | Subject)",
        "   Data: sleepstudy",
        "REML criterion at convergence: 1743.6",
        "Scaled residuals:",
        "Random effects:",
        " Subject  (Intercept)",
        "Number of obs: 180, groups:  Subject, 18",
        "Fixed effects:",
        "Correlation of Fixed Effects:",
    ]:
        assert piece in text
    assert str(fit) == text


def test_ml_summary_has_information_criteria() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", lmmfast.datasets.load("sleepstudy"), reml=False)
    text = fit.summary()
    assert "fit by maximum likelihood" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["AIC", "BIC"])
    assert lines[header].split() == ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    assert lines[header + 1].split() == ["1802.1", "1814.9", "-897.0", "1794.1", "176"]  # lme4's numbers


def test_summary_shows_satterthwaite_columns_when_cheap(fit) -> None:
    text = fit.summary()
    header = next(line for line in text.splitlines() if "Estimate" in line)
    assert header.split() == ["Estimate", "Std.", "Error", "df", "t", "value", "Pr(>|t|)"]
    assert "17.00" in text
    plain = fit.summary(ddf="none")
    assert "Pr(>|t|)" not in plain
    with pytest.raises(lmmfast.ArgumentError, match="ddf must be"):
        fit.summary(ddf="containment")


def test_singular_footer_points_to_lmmfast_documentation() -> None:
    fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff2"), checks={"singular": "ignore"})
    footer = fit.summary().splitlines()[-1]
    assert footer == "boundary (singular) fit: see help(lmmfast.SingularFitWarning)"
    assert "simplify" in lmmfast.SingularFitWarning.__doc__


def test_satterthwaite_estimate_leaves_out_a_slow_first_evaluation(fit) -> None:
    """In a fresh process the first evaluation compiles numba's kernels; its seconds made the
    summary estimate the df at about 9 s on sleepstudy and leave the p-values out."""
    n = fit.optsummary.n_evals
    compiling = dataclasses.replace(
        fit.optsummary, seconds=5.0 + 1e-4 * (n - 1), trace_seconds=np.r_[5.0, np.full(n - 1, 1e-4)]
    )
    fresh = dataclasses.replace(fit, optsummary=compiling)
    assert fresh.optsummary.seconds_per_evaluation == pytest.approx(1e-4)
    assert "Pr(>|t|)" in fresh.summary()
    slow = dataclasses.replace(fit, optsummary=dataclasses.replace(compiling, trace_seconds=np.full(n, 0.5)))
    # 4 (m + 1) gradient evaluations of about three evaluations' work, m = 3
    assert "Satterthwaite df and p-values left out: about 24 s" in slow.summary()


def test_verbose_summary_shows_the_engine_and_the_optimiser(fit) -> None:
    lines = fit.summary(verbose=True).splitlines()
    assert lines[3] == f"Engine: {fit.engine}"
    assert lines[4].startswith(f"Optimizer: NLOPT_LD_LBFGS, {fit.n_evals} evaluations in ")
    assert "Engine:" not in fit.summary()


def test_notebooks_show_the_summary_as_html(fit) -> None:
    page = fit._repr_html_()
    assert page.startswith('<pre class="lmmfast-summary">') and page.endswith("</pre>")
    assert "Formula: Reaction ~ Days + (Days | Subject)" in page and "Pr(&gt;|t|)" in page


def test_groups_are_listed_as_lme4_lists_them() -> None:
    fit = lmmfast.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", lmmfast.datasets.load("penicillin"))
    assert "Number of obs: 144, groups:  plate, 24; sample, 6" in fit.summary()
