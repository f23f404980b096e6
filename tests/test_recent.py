"""Repeated lmm and glmm calls on the same small data reuse the model the first prepared
(lmmfast.recent), and give the fit a fresh preparation gives; anything the model depends on
that differs — a value, a setting, the default coding — prepares it again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import SLEEPSTUDY_SLOPES
from test_model import assert_same_fit

import lmmfast
from lmmfast.design.fingerprint import FINGERPRINT_MAX_ROWS
from lmmfast.errors import ArgumentError, DataError
from lmmfast.recent import RECENT_MODELS, RecentModels


def same_model(a: lmmfast.LmmResult | lmmfast.GlmmResult, b: lmmfast.LmmResult | lmmfast.GlmmResult) -> bool:
    """Whether the two fits are of one prepared model (the design's matrices are shared)."""
    return a.prepared.fixed is b.prepared.fixed


def fresh_fit(formula: str, data: pd.DataFrame, **settings: object) -> lmmfast.LmmResult:
    """lmm's fit with nothing reused."""
    previous = lmmfast.set_options(model_cache=0)
    try:
        return lmmfast.lmm(formula, data, **settings)
    finally:
        lmmfast.set_options(**previous)


def test_a_repeated_call_reuses_the_prepared_model_and_gives_the_same_fit(sleep) -> None:
    first = lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep)
    again = lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep.copy())
    assert same_model(again, first)
    assert_same_fit(again, fresh_fit(SLEEPSTUDY_SLOPES, sleep))


def test_a_value_changed_in_place_prepares_the_model_again(sleep) -> None:
    data = sleep.copy()
    first = lmmfast.lmm(SLEEPSTUDY_SLOPES, data)
    data.loc[5, "Reaction"] += 50.0
    changed = lmmfast.lmm(SLEEPSTUDY_SLOPES, data)
    assert not same_model(changed, first)
    assert changed.objective != first.objective
    assert_same_fit(changed, fresh_fit(SLEEPSTUDY_SLOPES, data))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.assign(Subject=d["Subject"].astype(str)),  # another kind of column
        lambda d: d.assign(Days=d["Days"].astype(float)),  # another dtype, equal values
        lambda d: d.iloc[::-1].reset_index(drop=True),  # other row order
        lambda d: d.iloc[:-1],  # a row fewer
        lambda d: d.assign(Unused=1.0),  # another column: the names are part of the data
    ],
    ids=["kind", "dtype", "order", "rows", "columns"],
)
def test_other_data_prepare_the_model_again(sleep, change) -> None:
    first = lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep)
    assert not same_model(lmmfast.lmm(SLEEPSTUDY_SLOPES, change(sleep)), first)


def test_other_settings_prepare_the_model_again(sleep) -> None:
    weighted = sleep.assign(w=np.linspace(0.5, 2.0, len(sleep)))
    first = lmmfast.lmm(SLEEPSTUDY_SLOPES, weighted)
    for settings in ({"reml": False}, {"weights": "w"}, {"factorization": "cholmod"}):
        other = lmmfast.lmm(SLEEPSTUDY_SLOPES, weighted, **settings)
        assert not same_model(other, first)
        assert same_model(lmmfast.lmm(SLEEPSTUDY_SLOPES, weighted, **settings), other)
    assert not same_model(lmmfast.lmm("Reaction ~ Days + (1 | Subject)", weighted), first)


def test_the_codings_and_their_default_are_part_of_the_model() -> None:
    machines = lmmfast.datasets.load("machines")
    formula = "score ~ Machine + (1 | Worker)"
    treatment = lmmfast.lmm(formula, machines)
    summed = lmmfast.lmm(formula, machines, contrasts={"Machine": "sum"})
    assert not same_model(summed, treatment)
    previous = lmmfast.set_options(contrasts="sum")
    try:
        by_default = lmmfast.lmm(formula, machines)
    finally:
        lmmfast.set_options(**previous)
    assert not same_model(by_default, treatment)
    assert not same_model(by_default, summed)
    np.testing.assert_array_equal(by_default.beta, summed.beta)
    assert same_model(lmmfast.lmm(formula, machines), treatment)


def test_category_order_is_part_of_the_data(sleep) -> None:
    data = sleep.assign(Subject=pd.Categorical(sleep["Subject"]))
    first = lmmfast.lmm("Reaction ~ Subject + (1 | Days)", data)
    reordered = data.assign(Subject=data["Subject"].cat.reorder_categories(data["Subject"].cat.categories[::-1]))
    other = lmmfast.lmm("Reaction ~ Subject + (1 | Days)", reordered)
    assert not same_model(other, first)
    assert other.fixef_names != first.fixef_names


def test_what_cannot_be_told_by_value_is_prepared_each_time(sleep) -> None:
    weights = np.linspace(0.5, 2.0, len(sleep))
    assert not same_model(
        lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep, weights=weights), lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep, weights=weights)
    )
    as_dict = {name: sleep[name].to_numpy() for name in sleep.columns}
    assert not same_model(lmmfast.lmm(SLEEPSTUDY_SLOPES, as_dict), lmmfast.lmm(SLEEPSTUDY_SLOPES, as_dict))
    assert len(RECENT_MODELS) == 0


def test_polars_and_arrow_data_are_kept_too(sleep) -> None:
    import polars as pl

    polars = pl.from_pandas(sleep)
    first = lmmfast.lmm(SLEEPSTUDY_SLOPES, polars)
    assert same_model(lmmfast.lmm(SLEEPSTUDY_SLOPES, polars.clone()), first)
    assert not same_model(lmmfast.lmm(SLEEPSTUDY_SLOPES, polars.with_columns(pl.col("Reaction") + 1.0)), first)
    arrow = polars.to_arrow()
    from_arrow = lmmfast.lmm(SLEEPSTUDY_SLOPES, arrow)
    assert same_model(lmmfast.lmm(SLEEPSTUDY_SLOPES, arrow), from_arrow)
    assert not same_model(from_arrow, first)  # another container is another key
    assert_same_fit(from_arrow, first)


def test_large_data_are_not_kept() -> None:
    rng = np.random.default_rng(3)
    n = FINGERPRINT_MAX_ROWS + 1
    g = rng.integers(0, 50, size=n)
    data = pd.DataFrame({"y": rng.normal(size=50)[g] + rng.normal(size=n), "g": g})
    lmmfast.lmm("y ~ 1 + (1 | g)", data)
    assert len(RECENT_MODELS) == 0


def test_a_generalized_call_reuses_its_model_too() -> None:
    cbpp = lmmfast.datasets.load("cbpp")
    formula = "prop ~ period + (1 | herd)"
    first = lmmfast.glmm(formula, cbpp, weights="size")
    again = lmmfast.glmm(formula, cbpp, weights="size")
    assert same_model(again, first)
    assert_same_fit(again, first)
    assert not same_model(lmmfast.glmm(formula, cbpp, weights="size", nagq=0), first)
    assert not same_model(lmmfast.glmm(formula, cbpp, "binomial", link="probit", weights="size"), first)


def test_bad_input_raises_its_error_on_every_call(sleep) -> None:
    for _ in range(2):
        with pytest.raises(DataError, match="Column 'Reactions' is not in the data"):
            lmmfast.lmm("Reactions ~ Days + (1 | Subject)", sleep)
        with pytest.raises(ArgumentError, match="reml must be True or False"):
            lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep, reml="yes")
    assert len(RECENT_MODELS) == 0


def test_the_size_is_an_option_and_zero_turns_it_off(sleep) -> None:
    lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep)
    assert len(RECENT_MODELS) == 1
    previous = lmmfast.set_options(model_cache=0)
    try:
        assert previous["model_cache"] == 8
        assert len(RECENT_MODELS) == 0
        assert not same_model(lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep), lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep))
        assert len(RECENT_MODELS) == 0
    finally:
        lmmfast.set_options(**previous)
    assert RECENT_MODELS.size == 8


@pytest.mark.parametrize("size", [-1, 2.5, True, "8"])
def test_a_bad_size_is_refused(size) -> None:
    with pytest.raises(ArgumentError, match=rf"^model_cache must be an integer >= 0, got {size!r}\.$"):
        lmmfast.set_options(model_cache=size)
    assert lmmfast.get_options()["model_cache"] == 8


def test_the_store_drops_the_least_recently_used() -> None:
    store = RecentModels(size=2)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # a is now the most recent
    store.put("c", 3)
    assert (store.get("a"), store.get("b"), store.get("c")) == (1, None, 3)
    store.resize(1)
    assert len(store) == 1 and store.get("c") == 3
