"""Synthetic crossed subject × item designs for benchmarks and tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmmfast.errors import ArgumentError
from lmmfast.validation import check_choice, check_count

#: Per family: intercept, the effects of ``cond`` and ``freq``, and the SDs of the subjects'
#: and the items' intercepts and slopes (on the link scale for the generalized families).
EFFECTS = {
    "gaussian": (400.0, 30.0, -10.0, (40.0, 15.0), (25.0, 10.0)),
    "binomial": (0.2, 0.5, -0.2, (0.8, 0.3), (0.5, 0.2)),
    "poisson": (1.0, 0.3, -0.1, (0.4, 0.15), (0.3, 0.1)),
}


#: Designs of up to this many subject × item pairs draw each subject's items by a key per
#: pair (:func:`keyed_draws`); larger ones — whose keys would take minutes to draw — one item
#: at a time (:func:`successive_draws`), where a subject sees at most ``SUCCESSIVE_ITEMS``.
#: Both draw from the same distribution, from different streams of random numbers.
KEYED_PAIRS = 10**9
SUCCESSIVE_ITEMS = 64


def keyed_draws(
    rng: np.random.Generator, n_subjects: int, n_items: int, weights: np.ndarray | None, k: int
) -> np.ndarray:
    """Each subject's ``k`` distinct items (one row each) from a random key per subject ×
    item pair: the items of the k smallest keys, uniform (every item alike) or Exp(1) / wⱼ
    (item j by weight wⱼ: Efraimidis–Spirakis). The work is a key per pair.

    Examples
    --------
    >>> items = keyed_draws(np.random.default_rng(1), 4, 10, None, 3)
    >>> items.shape, all(len(set(row)) == 3 for row in items.tolist())
    ((4, 3), True)
    """
    items = np.empty((n_subjects, k), dtype=np.int64)
    chunk = max(1, 4_000_000 // n_items)
    for start in range(0, n_subjects, chunk):
        stop = min(n_subjects, start + chunk)
        keys = rng.random((stop - start, n_items))
        if weights is not None:
            keys = -np.log1p(-keys) / weights
        items[start:stop] = np.argpartition(keys, k - 1, axis=1)[:, :k]
    return items


def successive_draws(rng: np.random.Generator, n_subjects: int, probabilities: np.ndarray, k: int) -> np.ndarray:
    """Each subject's ``k`` distinct items (one row each), drawn one at a time: item j with
    probability pⱼ, drawn again while it repeats one of the row's earlier items — which
    makes each draw one by weight among the items not yet drawn, the distribution of
    :func:`keyed_draws`. The work grows with the draws, not with the items.

    Examples
    --------
    >>> items = successive_draws(np.random.default_rng(1), 4, np.full(10, 0.1), 3)
    >>> items.shape, all(len(set(row)) == 3 for row in items.tolist())
    ((4, 3), True)
    """
    cumulative = np.cumsum(probabilities)
    cumulative /= cumulative[-1]

    def draw(count: int) -> np.ndarray:
        return np.minimum(np.searchsorted(cumulative, rng.random(count), side="right"), len(cumulative) - 1)

    items = np.empty((n_subjects, k), dtype=np.int64)
    for column in range(k):
        rows = np.arange(n_subjects)
        while len(rows):
            items[rows, column] = draw(len(rows))
            repeated = np.any(items[rows, :column] == items[rows, column, None], axis=1)
            rows = rows[repeated]
    return items


def simulate_crossed(
    n_subjects: int,
    n_items: int,
    items_per_subject: int,
    *,
    trials_per_item: int = 1,
    slopes: bool = True,
    family: str = "gaussian",
    popularity: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate a psycholinguistic-style crossed design.

    Each subject sees ``items_per_subject`` distinct items drawn at random — uniformly, or,
    with ``popularity`` a > 0, item j (from 0) with weight (j + 1)^−a, as words by frequency
    or films by ratings (Zipf's law: a ≈ 1) — each ``trials_per_item`` times (designs of more
    than ``KEYED_PAIRS`` subject × item pairs draw them one at a time: the same distribution,
    another stream of random numbers for a seed, seconds instead of minutes); the condition
    ``cond`` (±0.5) is drawn per trial, the item covariate ``freq`` is standard normal per
    item. The response is

        y = 400 + 30·cond − 10·freq + s₀ + s₁·cond + i₀ + i₁·cond + ε

    with subject effects (sd 40 and 15, correlation 0.3), item effects (sd 25 and 10,
    correlation −0.2) — slopes only when ``slopes`` — and residual sd 60. For
    ``family="binomial"`` the linear predictor 0.2 + 0.5·cond − 0.2·freq plus subject (sd 0.8
    and 0.3) and item (sd 0.5 and 0.2) effects gives the probability of a 1 (logit link); for
    ``"poisson"``, 1 + 0.3·cond − 0.1·freq plus subject (0.4, 0.15) and item (0.3, 0.1)
    effects the log of a count's mean.

    Parameters
    ----------
    n_subjects, n_items, items_per_subject : int
    trials_per_item : int, default 1
        Replicates of each subject × item pair: raises n without adding levels.
    slopes : bool, default True
    family : {"gaussian", "binomial", "poisson"}, default "gaussian"
    popularity : float, default 0
        The power law of the items' popularity (0: every item equally likely).
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``subj``, ``item`` (integer codes), ``cond``, ``freq``, ``y``.

    Examples
    --------
    >>> data = simulate_crossed(50, 40, 20, seed=1)
    >>> data.shape, data.subj.nunique(), data.item.nunique() <= 40
    ((1000, 5), 50, True)
    >>> sorted(simulate_crossed(50, 40, 20, family="binomial").y.unique().tolist())
    [0, 1]
    """
    family = check_choice("family", family, tuple(EFFECTS))
    n_subjects = check_count("n_subjects", n_subjects, 2)
    n_items = check_count("n_items", n_items, 2)
    items_per_subject = check_count("items_per_subject", items_per_subject, 1)
    trials_per_item = check_count("trials_per_item", trials_per_item, 1)
    if items_per_subject > n_items:
        raise ArgumentError(f"items_per_subject ({items_per_subject}) cannot exceed n_items ({n_items}).")
    if isinstance(popularity, bool) or not isinstance(popularity, (int, float)) or not 0 <= popularity < 10:
        raise ArgumentError(f"popularity must be a number from 0 (uniform) to below 10, got {popularity!r}.")
    rng = np.random.default_rng(seed)
    weights = np.arange(1, n_items + 1, dtype=np.float64) ** -float(popularity)
    if n_subjects * n_items > KEYED_PAIRS and items_per_subject <= SUCCESSIVE_ITEMS:
        items = successive_draws(rng, n_subjects, weights / weights.sum(), items_per_subject)
    else:
        items = keyed_draws(rng, n_subjects, n_items, weights if popularity else None, items_per_subject)
    subj = np.repeat(np.arange(n_subjects), items_per_subject * trials_per_item)
    item = np.repeat(items.ravel(), trials_per_item)
    n = len(subj)
    cond = rng.choice([-0.5, 0.5], size=n)
    freq_by_item = rng.normal(size=n_items)

    def correlated(count: int, sd: tuple[float, float], rho: float) -> np.ndarray:
        cov = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
        return rng.multivariate_normal(np.zeros(2), cov, size=count)

    intercept, cond_effect, freq_effect, subject_sd, item_sd = EFFECTS[family]
    subject_effects = correlated(n_subjects, subject_sd, 0.3)
    item_effects = correlated(n_items, item_sd, -0.2)
    if not slopes:
        subject_effects[:, 1] = 0.0
        item_effects[:, 1] = 0.0
    mean = (
        intercept
        + cond_effect * cond
        + freq_effect * freq_by_item[item]
        + subject_effects[subj, 0]
        + subject_effects[subj, 1] * cond
        + item_effects[item, 0]
        + item_effects[item, 1] * cond
    )
    y: np.ndarray
    if family == "gaussian":
        y = mean + rng.normal(scale=60.0, size=n)
    elif family == "binomial":
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-mean))).astype(np.int64)
    else:
        y = rng.poisson(np.exp(mean))
    return pd.DataFrame({"subj": subj, "item": item, "cond": cond, "freq": freq_by_item[item], "y": y})
