"""Bundled datasets and the synthetic crossed-design generator."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.datasets import load, names, simulate_crossed


def test_every_reference_dataset_is_bundled() -> None:
    for name in ["sleepstudy", "dyestuff", "dyestuff2", "penicillin", "pastes", "insteval", "kb07", "dragons"]:
        assert name in names()
    assert load("InstEval").shape == (73421, 7)
    assert load("sleepstudy").attrs["name"] == "sleepstudy"


def test_unknown_dataset_lists_the_available_ones() -> None:
    with pytest.raises(lmmfast.ArgumentError, match="available: cake"):
        load("iris")


def test_load_returns_a_fresh_copy() -> None:
    first = load("dyestuff")
    first.loc[0, "Yield"] = -1
    assert load("dyestuff").loc[0, "Yield"] != -1


def test_simulated_design_has_the_requested_shape_and_is_seeded() -> None:
    data = simulate_crossed(40, 30, 10, trials_per_item=2, seed=5)
    assert len(data) == 40 * 10 * 2
    assert data.groupby("subj").item.nunique().eq(10).all()
    assert data.equals(simulate_crossed(40, 30, 10, trials_per_item=2, seed=5))
    assert not data.equals(simulate_crossed(40, 30, 10, trials_per_item=2, seed=6))
    assert set(np.unique(data.cond)) == {-0.5, 0.5}


def test_simulated_design_recovers_its_parameters() -> None:
    data = simulate_crossed(150, 80, 40, seed=3)
    fit = lmmfast.lmm("y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)", data, reml=False)
    assert fit.fixef["Intercept"] == pytest.approx(400, abs=15)
    assert fit.fixef["cond"] == pytest.approx(30, abs=8)
    assert fit.sigma == pytest.approx(60, rel=0.05)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        ((1, 10, 5), "n_subjects must be"),
        ((10, 10, 11), "cannot exceed n_items"),
        ((10, 10, 0), "items_per_subject must be"),
    ],
)
def test_simulation_arguments_are_validated(args, phrase) -> None:
    with pytest.raises(lmmfast.ArgumentError, match=phrase):
        simulate_crossed(*args)


def test_popular_items_are_seen_as_a_power_law_says() -> None:
    data = simulate_crossed(4000, 200, 10, popularity=1.0, slopes=False, seed=2)
    seen = data.groupby("item").subj.nunique().reindex(range(200), fill_value=0).to_numpy()
    assert (data.groupby(["subj", "item"]).size() == 1).all()  # distinct items per subject
    # the first item is in most subjects' ten; the ten most popular outnumber the last hundred
    assert seen[0] > 0.8 * 4000
    assert seen[:10].sum() > 2 * seen[100:].sum()
    assert np.corrcoef(np.log(np.arange(1, 201)), np.log(seen + 1))[0, 1] < -0.9


@pytest.mark.parametrize("popularity", [-1.0, 12.0, True, "zipf"])
def test_bad_popularity_is_refused(popularity) -> None:
    with pytest.raises(lmmfast.ArgumentError, match="popularity must be a number from 0"):
        simulate_crossed(10, 10, 3, popularity=popularity)


@pytest.mark.parametrize("popularity", [0.0, 1.0])
def test_item_draws_one_at_a_time_follow_the_keyed_draws_distribution(popularity) -> None:
    """Large designs draw each subject's items one at a time; each item's share of subjects
    agrees with the keyed draws' within five standard errors (a subject's items distinct)."""
    from lmmfast.datasets.simulate import keyed_draws, successive_draws

    subjects, n_items, k = 40_000, 30, 3
    weights = np.arange(1, n_items + 1, dtype=np.float64) ** -popularity
    keyed = keyed_draws(np.random.default_rng(1), subjects, n_items, weights if popularity else None, k)
    successive = successive_draws(np.random.default_rng(2), subjects, weights / weights.sum(), k)
    assert all(len(set(row)) == k for row in successive[:2000].tolist())
    assert (np.sort(successive, axis=1)[:, 1:] != np.sort(successive, axis=1)[:, :-1]).all()
    shares = [np.bincount(items.ravel(), minlength=n_items) / subjects for items in (keyed, successive)]
    standard_error = np.sqrt(2 * shares[0] * (1 - shares[0]) / subjects)
    assert np.all(np.abs(shares[0] - shares[1]) < 5 * standard_error)


def test_a_large_design_draws_its_items_one_at_a_time(monkeypatch) -> None:
    import lmmfast.datasets.simulate as simulate

    small = simulate_crossed(300, 50, 4, popularity=1.0, seed=4)
    monkeypatch.setattr(simulate, "KEYED_PAIRS", 100)
    data = simulate_crossed(300, 50, 4, popularity=1.0, seed=4)
    assert not data.equals(small)  # another stream of random numbers
    assert (data.groupby(["subj", "item"]).size() == 1).all()
    assert data.groupby("subj").item.nunique().eq(4).all()
