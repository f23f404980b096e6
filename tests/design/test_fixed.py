"""The fixed-effects design: formulaic names, R's baseline, and aliased columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def test_aliased_columns_are_dropped_with_a_warning_naming_them() -> None:
    frame = pd.DataFrame({"y": [1.0, 2, 3, 5, 4], "x": [1.0, 2, 3, 4, 6]})
    frame["x2"] = 2 * frame["x"]
    with pytest.warns(RankDeficiencyWarning, match="dropping x2"):
        design = build_fixed_design(frame, "y", "x + x2")
    assert design.names == ("Intercept", "x")
    assert design.dropped == ("x2",)


def test_logical_response_is_numeric() -> None:
    frame = pd.DataFrame({"y": [True, False, True, True], "x": [1.0, 2, 3, 4]})
    assert build_fixed_design(frame, "y", "x").y.tolist() == [1.0, 0.0, 1.0, 1.0]
