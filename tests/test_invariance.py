"""Properties that must hold: row order, level labels and determinism do not change a fit."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "Subject"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "plate"),
    ("pastes", "strength ~ 1 + (1 | batch/cask)", "batch"),
]


@pytest.mark.parametrize(("dataset", "formula", "group"), CASES)
def test_row_order_does_not_change_the_fit(dataset, formula, group) -> None:
    data = lmmfast.datasets.load(dataset)
    base = lmmfast.lmm(formula, data)
    shuffled = data.sample(frac=1.0, random_state=3).reset_index(drop=True)
    other = lmmfast.lmm(formula, shuffled)
    assert other.objective == pytest.approx(base.objective, rel=1e-10)
    np.testing.assert_allclose(other.fixef, base.fixef, rtol=1e-6)


@pytest.mark.parametrize(("dataset", "formula", "group"), CASES)
def test_relabelled_levels_do_not_change_the_fit(dataset, formula, group) -> None:
    data = lmmfast.datasets.load(dataset)
    base = lmmfast.lmm(formula, data)
    relabelled = data.assign(**{group: "L" + data[group].astype(str).str[::-1]})
    other = lmmfast.lmm(formula, relabelled)
    assert other.objective == pytest.approx(base.objective, rel=1e-10)
    np.testing.assert_allclose(other.fixef, base.fixef, rtol=1e-6)


def test_repeated_fits_are_bit_identical() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    first = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    second = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    assert first.objective == second.objective
    assert np.array_equal(first.theta, second.theta)
    assert np.array_equal(first.beta, second.beta)


def test_lower_objective_than_the_start() -> None:
    fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    assert fit.objective < fit.optsummary.initial_objective


def test_unit_weights_equal_no_weights() -> None:
    data = lmmfast.datasets.load("sleepstudy")
    plain = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data)
    weighted = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data, weights=np.ones(len(data)))
    assert weighted.objective == pytest.approx(plain.objective, rel=1e-12)


def test_weights_as_array_equal_weights_as_column() -> None:
    data = lmmfast.datasets.load("sleepstudy_weighted")
    by_name = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data, weights="w")
    by_array = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", data, weights=data["w"].to_numpy())
    assert by_array.objective == by_name.objective
