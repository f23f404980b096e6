"""lme4 formula parsing: fixed part, random terms, expansion of nesting and ``||``."""

from __future__ import annotations

import pytest

from lmmfast.errors import FormulaError
from lmmfast.formula import parse_formula


def test_fixed_part_and_terms_are_split() -> None:
    f = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert f.response == "Reaction"
    assert f.fixed == "Days"
    assert [(t.expr, t.factors, t.independent) for t in f.random] == [("Days", ("Subject",), False)]


def test_intercept_only_fixed_part_when_only_random_terms() -> None:
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_nested_grouping_expands_as_lme4() -> None:
    f = parse_formula("y ~ 1 + (1 | a/b/c)")
    assert [t.group_name for t in f.random] == ["a", "b:a", "c:b:a"]


def test_interaction_grouping_keeps_written_order() -> None:
    assert parse_formula("y ~ (1 | recipe:replicate)").random[0].factors == ("recipe", "replicate")


def test_double_bar_marks_independent_terms() -> None:
    f = parse_formula("y ~ x + (1 + x || g)")
    assert f.random[0].independent and f.random[0].expr == "1 + x"


def test_minus_one_stays_in_fixed_part() -> None:
    assert parse_formula("y ~ x + (1|g) - 1").fixed == "x - 1"


def test_brackets_inside_terms_do_not_split() -> None:
    f = parse_formula("y ~ I(x + z) + log(w) + (I(x - 1) | g)")
    assert f.fixed == "I(x + z) + log(w)"
    assert f.random[0].expr == "I(x - 1)"


@pytest.mark.parametrize(
    ("formula", "phrase"),
    [
        ("y ~ x", "no random-effects term"),
        ("y ~ x + (1|)", "grouping factor is missing"),
        ("y ~ x + 1|g", "must stand alone in parentheses"),
        ("y ~ (x | g | h)", "more than one bar"),
        ("y ~ x + (|g)", "nothing before the bar"),
        ("y ~ (1|g", "Unbalanced '('"),
        ("y ~ (1|g))", "Unbalanced closing bracket"),
        ("~ x + (1|g)", "no response"),
        ("y ~ ", "nothing on the right"),
        ("y ~ x - (1|g)", "cannot be removed"),
        ("y ~ x ++ (1|g)", "Empty term"),
        ("y ~ (1|log(g))", "is not a column name"),
        ("y ~ x ~ z + (1|g)", "exactly one '~'"),
        ("y ~ (1 | a//b)", "Malformed grouping factor"),
    ],
)
def test_malformed_formulas_raise_formula_error(formula: str, phrase: str) -> None:
    with pytest.raises(FormulaError, match=phrase.replace("(", r"\(")):
        parse_formula(formula)


def test_error_points_at_the_bad_term() -> None:
    with pytest.raises(FormulaError) as info:
        parse_formula("y ~ x + (|g)")
    lines = str(info.value).splitlines()
    assert lines[-1].index("^") == lines[-2].index("(|g)")


def test_non_string_formula_is_rejected() -> None:
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(42)  # type: ignore[arg-type]


def test_backticks_quote_grouping_columns_with_spaces() -> None:
    assert parse_formula("y ~ (1 | `the subject`/`an item`)").random[1].factors == ("an item", "the subject")


def test_formulaic_parses_are_kept_in_a_bounded_cache_and_the_data_decide_the_design() -> None:
    import numpy as np
    import pandas as pd

    import lmmfast
    from lmmfast.formula.cache import PARSED_EXPRESSIONS, parsed

    assert parsed.cache_info().maxsize == PARSED_EXPRESSIONS
    numbers = pd.DataFrame({"y": np.arange(12.0) % 5, "x": np.arange(12.0) % 3, "g": list("aabbccddeeff")})
    categories = numbers.assign(x=numbers.x.map({0.0: "p", 1.0: "q", 2.0: "r"}))
    formula = "y ~ x + (1 | g)"
    as_numbers = lmmfast.lmm(formula, numbers, checks={"singular": "ignore"})
    as_categories = lmmfast.lmm(formula, categories, checks={"singular": "ignore"})
    assert as_numbers.fixef_names == ("Intercept", "x")
    assert as_categories.fixef_names == ("Intercept", "x[T.q]", "x[T.r]")
