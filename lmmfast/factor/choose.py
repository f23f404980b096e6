"""Pick the cheaper factorisation path from the structure of the cross-products."""

from __future__ import annotations

import os

import numpy as np

from lmmfast.control import FACTORIZATIONS
from lmmfast.crossprod import CrossProducts
from lmmfast.errors import MemoryBudgetError
from lmmfast.factor.base import RandomEffectsFactor
from lmmfast.factor.blocked import BlockedFactor
from lmmfast.factor.cholmod import CholmodFactor
from lmmfast.factor.plan import format_bytes
from lmmfast.parameters import ThetaLayout
from lmmfast.validation import check_choice

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


def choose_method(cp: CrossProducts, shape: tuple[int, float] | None = None) -> str:
    """``"blocked"`` or ``"cholmod"``, whichever should factor faster.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> choose_method(prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective.cross_products)
    'blocked'
    """
    q2, density = dense_block_density(cp) if shape is None else shape
    return "blocked" if q2 <= SMALL_DENSE or density >= DENSE_ENOUGH else "cholmod"


def physical_memory() -> int:
    """Bytes of physical memory on this machine (0 if it cannot be told)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def default_memory_budget() -> int:
    """80% of physical memory (8 GiB where it cannot be told)."""
    total = physical_memory()
    return int(0.8 * total) if total else 8 * 2**30


def blocked_bytes(cp: CrossProducts, shape: tuple[int, float] | None = None) -> int:
    """Memory the blocked path's factor needs, estimated before anything is allocated.

    It holds the later terms' dense block up to three times (its factor, the inverse for the
    analytic gradient, and the per-count sums of balanced designs or LAPACK's working
    copies); the first term's blocks and their factor; the coupling between the first term
    and the later ones three times (its values, where they come from, and L21) with its
    pattern (per first-term level and row of the dense block: an index of its level, its
    row, and where the level's entries start and end; per stored block: its row, term and
    offset); and the dense block's stored blocks with their positions. The dense
    coupling route's BLAS copies are added by the factor once it has chosen that route
    (:attr:`lmmfast.factor.blocked.BlockedFactor.route_bytes`). ``shape`` is
    :func:`dense_block_density` of ``cp`` where already known. (The CHOLMOD path's estimate
    comes from its symbolic analysis, exact in the factor's size:
    :attr:`lmmfast.factor.CholmodFactor.estimated_bytes`.)
    """
    q2, _ = dense_block_density(cp) if shape is None else shape
    sizes = cp.term_sizes
    k1, n1 = int(sizes[0]), int(cp.term_levels[0])
    cross = (cp.slot_term_b == 0) & (cp.slot_term_a > 0)
    coupling_blocks = int(np.count_nonzero(cross))
    coupling_rows = int(np.sum(sizes[cp.slot_term_a[cross]]))  # (first-term level, row of S) pairs
    coupling_values = k1 * coupling_rows
    later = cp.slot_term_b > 0
    dense_blocks = int(np.count_nonzero(later))
    dense_values = int(np.sum(sizes[cp.slot_term_a[later]] * sizes[cp.slot_term_b[later]]))
    values = (
        3 * q2 * q2
        + 2 * n1 * k1 * k1
        + 3 * coupling_values
        + 5 * coupling_rows
        + 3 * coupling_blocks
        + 2 * dense_values
        + 5 * dense_blocks
    )
    return int(8 * values)


def make_factor(
    cp: CrossProducts,
    layout: ThetaLayout,
    method: str = "auto",
    memory_budget: float | None = None,
    max_threads: int | None = None,
    route: str = "auto",
    merged_terms: bool = False,
    varying_weights: bool = False,
    design_bytes: int = 0,
) -> RandomEffectsFactor:
    """Build the factorisation path ``method`` (``"auto"`` picks by :func:`choose_method`),
    refusing up front when it would need more than ``memory_budget`` bytes with the
    ``design_bytes`` that the model's design already holds (its rows' arrays and the
    cross-products): the factor's estimate (its :meth:`describe`'s ``estimated_bytes``)
    counts both, the fit's memory beyond the data.

    ``max_threads`` caps the threads of the blocked path's sparse passes and of BLAS
    (default: the machine's cores); ``route`` forces the blocked path's coupling route
    (:data:`lmmfast.factor.plan.ROUTES`); ``merged_terms`` records that the terms are merged
    ones (:mod:`lmmfast.design.amalgamate`); ``varying_weights`` that its values will be
    replaced by those of other weights (:meth:`~lmmfast.factor.RandomEffectsFactor.refill`).
    The factor's :meth:`describe` is the resulting
    :class:`~lmmfast.factor.plan.FactorPlan`.

    Raises
    ------
    MemoryBudgetError
        With the memory needed, the budget, and what to do instead.
    """
    check_choice("factorization", method, FACTORIZATIONS)
    budget = default_memory_budget() if memory_budget is None else memory_budget
    shape = dense_block_density(cp)
    if method == "auto":
        method = choose_method(cp, shape)
        if method == "blocked" and design_bytes + blocked_bytes(cp, shape) > budget:
            method = "cholmod"
    if method == "blocked":
        needed = design_bytes + blocked_bytes(cp, shape)
        if needed > budget:
            raise MemoryBudgetError(_over_budget(needed, design_bytes, "blocked", budget, shape[0]))
        # the factor's patterns are of the order of the stored products; its numbers (the
        # dense block, the route's copies) are made by its first update, after this check
        blocked = BlockedFactor(cp, layout, max_threads, route, needed, merged_terms, varying_weights)
        if blocked.estimated_bytes > budget:
            raise MemoryBudgetError(_over_budget(blocked.estimated_bytes, design_bytes, "blocked", budget, shape[0]))
        return blocked
    # the symbolic analysis first (memory of the order of the stored products): it gives the
    # factor's size exactly, and only then is the budget checked
    factor = CholmodFactor(cp, layout, merged_terms, budget, design_bytes)
    if factor.estimated_bytes > budget:
        raise MemoryBudgetError(
            _over_budget(factor.estimated_bytes, design_bytes, "cholmod", budget, shape[0], factor.factor_nonzeros)
        )
    return factor


def _over_budget(needed: int, design_bytes: int, method: str, budget: float, q2: int, factor_nonzeros: int = 0) -> str:
    if method == "blocked":
        what = f"the random effects after the first term form a {q2} × {q2} block that is dense after elimination"
    else:
        what = f"its sparse Cholesky factor has {factor_nonzeros:,} non-zeros after CHOLMOD's fill-reducing ordering"
    return (
        f"Fitting this model needs about {format_bytes(needed)} beyond the data ({format_bytes(design_bytes)} for "
        f"the design's arrays, the rest to factor it on the {method} path; {what}), more than the memory "
        f"budget of {format_bytes(budget)}. Simplify the random effects of the terms with many levels "
        "(fewer slopes, or fewer levels by pooling rare ones), or raise memory_budget if the machine has "
        "the memory."
    )
