"""The fixed-effects design: formulaic names, R's baseline, and aliased columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmfast
from lmmfast.design import build_fixed_design
from lmmfast.errors import RankDeficiencyWarning


def test_treatment_contrasts_use_the_first_sorted_level() -> None:
    frame = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 7], "f": list("cbacba")})
    design = build_fixed_design(frame, "y", "f")
    assert design.names == ("Intercept", "f[T.b]", "f[T.c]")


def test_numpy_transforms_and_interactions() -> None:
    frame = pd.DataFrame({"y": [1.0, 2, 3, 5], "x": [1.0, 2, 3, 4], "f": list("abab")})
    design = build_fixed_design(frame, "y", "np.log(x) + x:f")
    assert design.names == ("Intercept", "np.log(x)", "x:f[a]", "x:f[b]")  # as R: no main effect, full coding
    np.testing.assert_allclose(design.X[:, 1], np.log(frame.x))


def test_aliased_columns_are_dropped_and_named() -> None:
    frame = pd.DataFrame({"y": [1.0, 2, 3, 5, 4], "x": [1.0, 2, 3, 4, 6]})
    frame["x2"] = 2 * frame["x"]
    design = build_fixed_design(frame, "y", "x + x2")
    assert design.names == ("Intercept", "x")
    assert design.dropped == ("x2",)


def test_fit_warns_about_aliased_columns_and_matches_the_reduced_model() -> None:
    data = lmmfast.datasets.load("sleepstudy").assign(Days2=lambda d: 2 * d.Days + 1)
    with pytest.warns(RankDeficiencyWarning, match="dropping Days2"):
        fit = lmmfast.lmm("Reaction ~ Days + Days2 + (1 | Subject)", data)
    reduced = lmmfast.lmm("Reaction ~ Days + (1 | Subject)", data)
    assert list(fit.fixef.index) == ["Intercept", "Days"]
    assert fit.dropped_columns == ("Days2",)
    assert fit.objective == pytest.approx(reduced.objective, rel=1e-12)


def test_badly_scaled_predictors_give_the_rescaled_answer() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    base = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    for scale in (1e-9, 1e9):
        fit = lmmfast.lmm("Reaction ~ Days_scaled + (Days | Subject)", data.assign(Days_scaled=data.Days * scale))
        assert fit.fixef["Days_scaled"] * scale == pytest.approx(base.fixef["Days"], rel=1e-10)
        assert fit.stderr["Days_scaled"] * scale == pytest.approx(base.stderr["Days"], rel=1e-6)


def test_logical_response_is_numeric() -> None:
    frame = pd.DataFrame({"y": [True, False, True, True], "x": [1.0, 2, 3, 4]})
    assert build_fixed_design(frame, "y", "x").y.tolist() == [1.0, 0.0, 1.0, 1.0]


def test_an_intercept_alone_is_formulaics_intercept_without_a_pass() -> None:
    # built without formulaic (dyestuff's, penicillin's fixed part), its matrix, names and
    # spec are formulaic's own, and the spec builds the same matrix for other rows
    from formulaic import model_matrix

    frame = pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [0.5, 1.5, 2.5]})
    design = build_fixed_design(frame, "y", "1")
    expected = model_matrix("1", frame, output="numpy")
    np.testing.assert_array_equal(design.X, np.asarray(expected))
    assert design.names == ("Intercept",)
    assert design.spec.column_names == expected.model_spec.column_names
    np.testing.assert_array_equal(
        np.asarray(design.spec.get_model_matrix(frame.iloc[:2], output="numpy")), np.ones((2, 1))
    )
    assert build_fixed_design(frame, "y", "1 + x").X.shape == (3, 2)  # anything more goes through formulaic
