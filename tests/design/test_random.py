"""Random-effects terms: level codes, interaction levels, ``||`` splitting, lme4's order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmfast.design import build_random_terms
from lmmfast.design.random import display_names
from lmmfast.errors import ModelError
from lmmfast.formula import parse_formula


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "y": rng.normal(size=24),
            "x": rng.normal(size=24),
            "a": np.repeat([2, 1, 3], 8),
            "b": np.tile(list("qp"), 12),
            "f": np.tile(list("uvw"), 8),
        }
    )


def test_terms_are_ordered_by_decreasing_levels_stably(frame) -> None:
    terms = build_random_terms(frame, parse_formula("y ~ (1 | a) + (x || b) + (1 | a/b)").random)
    assert [(t.group, t.columns) for t in terms] == [
        ("b:a", ("(Intercept)",)),
        ("a", ("(Intercept)",)),
        ("a", ("(Intercept)",)),
        ("b", ("(Intercept)",)),
        ("b", ("x",)),
    ]
    assert display_names(terms) == ["b:a", "a", "a.1", "b", "b.1"]


def test_numeric_grouping_levels_sort_numerically_and_interactions_as_r(frame) -> None:
    terms = build_random_terms(frame, parse_formula("y ~ (1 | a:b)").random)
    assert terms[0].levels.tolist() == ["1:p", "1:q", "2:p", "2:q", "3:p", "3:q"]
    assert terms[0].levels[terms[0].codes].tolist()[:2] == ["2:q", "2:p"]


def test_factor_inside_random_term_gives_indicator_columns(frame) -> None:
    term = build_random_terms(frame, parse_formula("y ~ (0 + f | a)").random)[0]
    assert term.columns == ("f[u]", "f[v]", "f[w]")
    np.testing.assert_array_equal(term.values.sum(axis=1), 1.0)


def test_z_block_matches_codes_and_values(frame) -> None:
    term = build_random_terms(frame, parse_formula("y ~ (x | a)").random)[0]
    Z = term.z_block().toarray()
    assert Z.shape == (24, 6)
    row = 0
    level = term.codes[row]
    np.testing.assert_allclose(Z[row, 2 * level : 2 * level + 2], [1.0, frame.x[row]])


def test_single_level_factor_is_not_identifiable(frame) -> None:
    with pytest.raises(ModelError, match="single level"):
        build_random_terms(frame.assign(a=1), parse_formula("y ~ (1 | a)").random)


def test_as_many_levels_as_observations_is_not_identifiable(frame) -> None:
    with pytest.raises(ModelError, match="24 levels for 24 observations"):
        build_random_terms(frame.assign(a=np.arange(24)), parse_formula("y ~ (1 | a)").random)


def test_more_random_effects_than_observations_is_not_identifiable(frame) -> None:
    with pytest.raises(ModelError, match="random effects"):
        build_random_terms(frame.assign(a=np.arange(24) // 2), parse_formula("y ~ (x | a)").random)


def test_a_random_intercept_is_formulaics_intercept_without_a_pass(frame) -> None:
    # built without formulaic (the common term), its columns and spec are formulaic's own
    from formulaic import model_matrix

    (term,) = build_random_terms(frame, parse_formula("y ~ (1 | f)").random)
    expected = model_matrix("1", frame, output="numpy")
    np.testing.assert_array_equal(term.values, np.asarray(expected))
    assert term.columns == ("(Intercept)",)
    assert term.spec.column_names == expected.model_spec.column_names
    np.testing.assert_array_equal(
        np.asarray(term.spec.get_model_matrix(frame.iloc[:3], output="numpy")), np.ones((3, 1))
    )
    # a slope's term still goes through formulaic
    (slope,) = build_random_terms(frame, parse_formula("y ~ (1 + x | f)").random)
    np.testing.assert_array_equal(slope.values[:, 1], frame["x"].to_numpy())
