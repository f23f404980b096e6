"""The pictures: what each plot draws (points, panels, labels, order), on the Agg backend."""

from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

import lmmfast
from lmmfast.plots import plot_bootstrap, plot_profile, pooling_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_caterpillar_has_a_sorted_panel_per_column(fit) -> None:
    figure = fit.plot_ranef()
    assert [axis.get_title() for axis in figure.axes] == ["Subject: (Intercept)", "Subject: Days"]
    table = fit.ranef_table()
    for axis, column in zip(figure.axes, ["(Intercept)", "Days"]):
        x, _ = axis.lines[0].get_data()
        assert len(x) == 18 and np.all(np.diff(x) >= 0)  # one point per subject, sorted
        expected = table[table.term == column].sort_values("condval", kind="stable")
        np.testing.assert_allclose(x, expected.condval)
        assert [t.get_text() for t in axis.get_yticklabels()] == [str(g) for g in expected.grp]
        assert axis.get_xlabel() == "conditional mode"
        # the interval is ±1.96 conditional sd
        segments = axis.collections[0].get_segments()
        np.testing.assert_allclose([s[1][0] - s[0][0] for s in segments], 2 * 1.959964 * expected.condsd, rtol=1e-5)


def test_caterpillar_draws_on_given_axes_and_checks_their_number(fit) -> None:
    _, axes = plt.subplots(1, 2)
    assert fit.plot_ranef(ax=axes) is axes[0].figure
    with pytest.raises(lmmfast.ArgumentError, match="ax must be 2 axes, one per panel, got 1"):
        fit.plot_ranef(ax=axes[0])


def test_pooling_shows_own_fits_mixed_estimates_and_complete_pooling(fit, sleep) -> None:
    axis = fit.plot_pooling("Subject")
    own, mixed, complete = (collection.get_offsets() for collection in axis.collections)
    assert len(own) == len(mixed) == 18 and len(complete) == 1
    arrows = [child for child in axis.get_children() if isinstance(child, matplotlib.text.Annotation)]
    assert len(arrows) == 18
    subject = sleep[sleep.Subject == 308]
    slope, intercept = np.polyfit(subject.Days, subject.Reaction, 1)
    table = pooling_table(fit, "Subject")
    assert table.loc["308", "ols_intercept"] == pytest.approx(intercept) and table.loc[
        "308", "ols_slope"
    ] == pytest.approx(slope)
    np.testing.assert_allclose(table[["mixed_intercept", "mixed_slope"]], fit.coef["Subject"][["Intercept", "Days"]])
    np.testing.assert_allclose(complete[0], np.polyfit(sleep.Days, sleep.Reaction, 1)[::-1])
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("(Intercept)", "Days")


def test_pooling_needs_an_intercept_and_a_slope(sleep) -> None:
    intercepts = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(
        lmmfast.ArgumentError, match=r"needs a random intercept and one random slope.*\(\(Intercept\) \| Subject\)"
    ):
        intercepts.plot_pooling()


def test_residual_panels_hold_every_observation_and_every_mode(fit) -> None:
    figure = fit.plot_residuals()
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == [
        "Residuals vs fitted",
        "Normal QQ: scaled residuals",
        "Normal QQ: random effects",
        "Scale-location",
    ]
    counts = [len(axis.collections[0].get_offsets()) for axis in figure.axes]
    assert counts == [180, 180, 36, 180]
    np.testing.assert_allclose(figure.axes[0].collections[0].get_offsets()[:, 1], fit.residuals())


def test_profile_and_bootstrap_panels() -> None:
    fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    traces = fit.profile(points=5)
    figure = plot_profile(traces)
    assert [axis.get_title() for axis in figure.axes] == ["sd_(Intercept)|Batch", "sigma", "Intercept"]
    assert all(len(axis.lines[0].get_xdata()) == 5 for axis in figure.axes)
    replicates = fit.bootstrap(30, seed=2)
    figure = fit.plot_bootstrap(replicates, columns=["Intercept", "sigma"])
    assert [axis.get_title() for axis in figure.axes] == ["Intercept", "sigma"]
    heights = [patch.get_height() * patch.get_width() for patch in figure.axes[1].patches]
    assert sum(heights) == pytest.approx(1.0)  # a density
    with pytest.raises(lmmfast.ArgumentError, match=r"columns \['tau'\] are not in the replicates"):
        plot_bootstrap(replicates, columns=["tau"])
    with pytest.raises(lmmfast.ArgumentError, match=r"traces of fit\.profile"):
        plot_profile(pd.DataFrame({"x": [1]}))


def test_without_matplotlib_the_error_says_how_to_install_it(fit, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(lmmfast.MissingDependencyError, match=r"pip install 'lmmfast\[plot\]'") as info:
        fit.plot_residuals()
    assert isinstance(info.value, ImportError) and isinstance(info.value, lmmfast.LmmfastError)


@pytest.fixture(scope="module")
def cbpp_fit() -> lmmfast.GlmmResult:
    return lmmfast.glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")


def test_binned_residuals_are_the_bins_means_and_their_standard_errors(cbpp_fit) -> None:
    table = cbpp_fit.binned_residuals(bins=4)
    mu, y, trials = cbpp_fit.fitted(), cbpp_fit.model.response.y, cbpp_fit.model.response.weights
    lowest = np.argsort(mu, kind="stable")[:14]  # 56 rows in 4 bins of 14
    assert table.rows.tolist() == [14, 14, 14, 14]
    assert table.fitted[0] == pytest.approx(mu[lowest].mean())
    assert table.residual[0] == pytest.approx((y[lowest] - mu[lowest]).mean())
    assert table.std_error[0] == pytest.approx(np.sqrt(np.sum(mu[lowest] * (1 - mu[lowest]) / trials[lowest])) / 14)
    assert len(cbpp_fit.binned_residuals()) == 7  # √56, rounded
    with pytest.raises(lmmfast.ArgumentError, match=r"bins must be a whole number from 1 to the number"):
        cbpp_fit.binned_residuals(bins=0)


def test_generalized_residual_plots_draw_bins_residuals_and_random_effects(cbpp_fit) -> None:
    figure = cbpp_fit.plot_residuals(bins=5)
    binned, pearson, qq = figure.axes
    assert len(binned.collections[-1].get_offsets()) == 5  # the bins' points, over the ±2 SE band
    assert len(pearson.collections[0].get_offsets()) == cbpp_fit.nobs
    assert len(qq.collections[0].get_offsets()) == 15  # one mode per herd
    assert pearson.get_xlabel() == "linear predictor" and binned.get_ylabel() == "mean residual (±2 SE)"


def test_generalized_bootstrap_densities(cbpp_fit) -> None:
    replicates = cbpp_fit.bootstrap(6, seed=2)
    figure = cbpp_fit.plot_bootstrap(replicates, columns=["Intercept", "herd.(Intercept)"])
    assert [axis.get_title() for axis in figure.axes] == ["Intercept", "herd.(Intercept)"]
