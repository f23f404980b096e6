"""Pick the cheaper factorisation path from the structure of the cross-products."""

from __future__ import annotations

import numpy as np

from lmmfast.crossprod import CrossProducts
from lmmfast.errors import DataError
from lmmfast.factor.base import RandomEffectsFactor
from lmmfast.factor.blocked import BlockedFactor
from lmmfast.factor.cholmod import CholmodFactor
from lmmfast.parameters import ThetaLayout

METHODS = ("auto", "blocked", "cholmod")

#: Below this order the later terms' block is cheap to keep dense whatever its fill.
SMALL_DENSE = 1000

#: Above this (estimated) density of the later terms' block after eliminating the first
#: term, a dense LAPACK factorisation beats CHOLMOD's supernodal one.
DENSE_ENOUGH = 0.2


def dense_block_density(cp: CrossProducts) -> tuple[int, float]:
    """Order of the later terms' block and an upper bound on its lower-triangle density
    after the first term is eliminated (its own pattern plus one clique per first-term level)."""
    q1 = int(cp.term_sizes[0] * cp.term_levels[0])
    q2 = cp.q - q1
    if q2 == 0:
        return 0, 1.0
    sizes = cp.term_sizes
    later = cp.slot_term_b > 0
    own = float(np.sum(sizes[cp.slot_term_a[later]] * sizes[cp.slot_term_b[later]]))
    cross = cp.slot_term_b == 0
    cross &= cp.slot_term_a > 0
    rows_per_level = np.bincount(
        cp.slot_level_b[cross], weights=sizes[cp.slot_term_a[cross]], minlength=int(cp.term_levels[0])
    )
    fill = float(np.sum(rows_per_level * (rows_per_level + 1) / 2))
    total = q2 * (q2 + 1) / 2
    return q2, min(1.0, (own + fill) / total)


def choose_method(cp: CrossProducts) -> str:
    """``"blocked"`` or ``"cholmod"``, whichever should factor faster.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> choose_method(prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective.cross_products)
    'blocked'
    """
    q2, density = dense_block_density(cp)
    return "blocked" if q2 <= SMALL_DENSE or density >= DENSE_ENOUGH else "cholmod"


def make_factor(cp: CrossProducts, layout: ThetaLayout, method: str = "auto") -> RandomEffectsFactor:
    """Build the factorisation path ``method`` (``"auto"`` picks by :func:`choose_method`)."""
    if method not in METHODS:
        raise DataError(f"factorization must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    if method == "auto":
        method = choose_method(cp)
    return BlockedFactor(cp, layout) if method == "blocked" else CholmodFactor(cp, layout)
