"""Terms on the same grouping factor, factored as one term with a block-diagonal template.

``(1 + S + P || subj)`` is, as in lme4, the three terms ``(1 | subj) + (0 + S | subj) +
(0 + P | subj)``, each with its own θ. Λ'Z'ZΛ + I is the same matrix whether they are three
terms or one term with a diagonal 3 × 3 template, but the blocked path (eliminate the first
term, factor the rest densely) is far cheaper for the one term: kb07's zero-correlation model
has 8 scalar terms per factor, so as separate terms all but one of the subject terms land in
the dense block (648 random effects), and merged only the items do (256) — 16 times less
``potrf``/``potri`` work per evaluation. The result (names, θ order, one term per lme4 term)
does not change: only the factor sees the merged terms, through a permutation of the random
effects and a map of θ into the merged templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmmfast.crossprod import CrossProducts
from lmmfast.parameters import ThetaLayout


@dataclass(frozen=True)
class MergedTerms:
    """The merged terms' cross-products and how they relate to the model's terms.

    Attributes
    ----------
    cross_products : CrossProducts
        Z'Z's blocks for the merged terms (largest first); ``ZtXy`` is left empty.
    layout : ThetaLayout
        Full lower-triangular templates for the merged terms.
    theta_index : numpy.ndarray
        Position in the merged layout's θ of each of the model's θ (the others stay 0).
    permutation : numpy.ndarray
        For each merged random effect, the model's random effect it is.
    blocks : tuple of (int, int)
        For each model term, its merged term and first row within that term's template.
    """

    cross_products: CrossProducts
    layout: ThetaLayout
    theta_index: np.ndarray
    permutation: np.ndarray
    blocks: tuple[tuple[int, int], ...]

    def merged_theta(self, theta: np.ndarray) -> np.ndarray:
        """The merged layout's θ for the model's ``theta``."""
        out = np.zeros(self.layout.size)
        out[self.theta_index] = theta
        return out

    def split_blocks(self, merged: Sequence[np.ndarray], sizes: Sequence[int]) -> list[np.ndarray]:
        """Per model term, its diagonal block of the merged per-term k×k matrices ``merged``."""
        out = []
        for (term, first), k in zip(self.blocks, sizes):
            out.append(merged[term][first : first + k, first : first + k].copy())
        return out


def _changes(*sorted_keys: np.ndarray) -> np.ndarray:
    """Where consecutive rows of lexicographically sorted keys differ (one flag per pair)."""
    out = np.zeros(len(sorted_keys[0]) - 1, dtype=bool)
    for key in sorted_keys:
        out |= key[1:] != key[:-1]
    return out


def merge_terms(cp: CrossProducts, layout: ThetaLayout, keys: Sequence[int]) -> MergedTerms | None:
    """Merge the terms that share a key (the same grouping factor), or None if none do.

    Parameters
    ----------
    cp : CrossProducts
        The model's cross-products.
    layout : ThetaLayout
        The model's θ layout.
    keys : sequence of int
        One per term; terms with equal keys have the same levels and the same level per row.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmfast.crossprod import form_cross_products
    >>> from lmmfast.design.random import RandomTerm
    >>> codes, levels = np.array([0, 0, 1]), np.array(["a", "b"])
    >>> terms = [RandomTerm("g", ("(Intercept)",), levels, codes, np.ones((3, 1))),
    ...          RandomTerm("g", ("x",), levels, codes, np.array([[1.0], [2.0], [3.0]]))]
    >>> cp = form_cross_products(terms, np.ones((3, 1)), np.zeros(3))
    >>> merged = merge_terms(cp, ThetaLayout.from_sizes([1, 1]), [0, 0])
    >>> merged.cross_products.term_sizes.tolist(), merged.permutation.tolist(), merged.theta_index.tolist()
    ([2], [0, 2, 1, 3], [0, 2])
    """
    keys = list(keys)
    if len(set(keys)) == len(keys):
        return None
    sizes, levels = cp.term_sizes, cp.term_levels
    groups: list[list[int]] = []
    seen: dict[int, int] = {}
    for term, key in enumerate(keys):
        if key not in seen:
            seen[key] = len(groups)
            groups.append([])
        groups[seen[key]].append(term)
    # largest first, as the model's terms are ordered (ties keep their order)
    group_sizes = [int(sum(sizes[t] for t in group)) for group in groups]
    group_levels = [int(levels[group[0]]) for group in groups]
    by_size = sorted(range(len(groups)), key=lambda g: -group_sizes[g] * group_levels[g])
    groups = [groups[g] for g in by_size]
    merged_sizes = np.asarray([group_sizes[g] for g in by_size], dtype=np.int64)
    merged_levels = np.asarray([group_levels[g] for g in by_size], dtype=np.int64)
    merged_offsets = np.concatenate([[0], np.cumsum(merged_sizes * merged_levels)[:-1]]).astype(np.int64)

    term_of = np.empty(len(keys), dtype=np.int64)
    first_row = np.empty(len(keys), dtype=np.int64)
    for g, group in enumerate(groups):
        start = 0
        for t in group:
            term_of[t], first_row[t] = g, start
            start += int(sizes[t])

    # the model's random effect at each merged position
    permutation = np.empty(cp.q, dtype=np.int64)
    for t in range(len(keys)):
        k, n, g = int(sizes[t]), int(levels[t]), term_of[t]
        model = cp.column_offsets[t] + np.arange(n * k)
        level, within = np.divmod(np.arange(n * k), k)
        permutation[merged_offsets[g] + level * merged_sizes[g] + first_row[t] + within] = model

    # every stored value of the model's blocks, placed in a merged block
    slot_sizes = sizes[cp.slot_term_a] * sizes[cp.slot_term_b]
    slot = np.repeat(np.arange(len(slot_sizes)), slot_sizes)
    position = np.arange(int(slot_sizes.sum())) - np.repeat(cp.slot_offsets, slot_sizes)
    kb = sizes[cp.slot_term_b][slot]
    i, j = np.divmod(position, kb)
    term_a, term_b = term_of[cp.slot_term_a][slot], term_of[cp.slot_term_b][slot]
    level_a, level_b = cp.slot_level_a[slot], cp.slot_level_b[slot]
    row = first_row[cp.slot_term_a][slot] + i
    col = first_row[cp.slot_term_b][slot] + j
    values = cp.block_values  # stored block after block, as ``slot`` and ``position`` run
    # merged blocks keep the convention term_a >= term_b, level_a >= level_b within a term
    flip = (term_a < term_b) | ((term_a == term_b) & (level_a < level_b))
    term_a, term_b = np.where(flip, term_b, term_a), np.where(flip, term_a, term_b)
    level_a, level_b = np.where(flip, level_b, level_a), np.where(flip, level_a, level_b)
    row, col = np.where(flip, col, row), np.where(flip, row, col)
    # a merged term's own diagonal blocks are stored whole: mirror what lies off the model's
    # own terms' diagonal blocks (the products of two different model terms of one factor)
    mirror = (term_a == term_b) & (level_a == level_b) & (row != col)
    term_a = np.concatenate([term_a, term_a[mirror]])
    term_b = np.concatenate([term_b, term_b[mirror]])
    level_a = np.concatenate([level_a, level_a[mirror]])
    level_b = np.concatenate([level_b, level_b[mirror]])
    row, col = np.concatenate([row, col[mirror]]), np.concatenate([col, row[mirror]])
    values = np.concatenate([values, values[mirror]])
    # the model's own diagonal blocks were stored whole already: keep one copy of each value
    order = np.lexsort((col, row, level_b, level_a, term_b, term_a))
    term_a, term_b, level_a, level_b, row, col, values = (
        a[order] for a in (term_a, term_b, level_a, level_b, row, col, values)
    )
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = _changes(term_a, term_b, level_a, level_b, row, col)
    term_a, term_b, level_a, level_b, row, col, values = (
        a[keep] for a in (term_a, term_b, level_a, level_b, row, col, values)
    )
    starts = np.ones(len(term_a), dtype=bool)
    starts[1:] = _changes(term_a, term_b, level_a, level_b)
    block = np.cumsum(starts) - 1
    blocks = np.stack([a[starts] for a in (term_a, term_b, level_a, level_b)])
    block_sizes = merged_sizes[blocks[0]] * merged_sizes[blocks[1]]
    slot_offsets = np.concatenate([[0], np.cumsum(block_sizes)[:-1]]).astype(np.int64)
    block_values = np.zeros(int(block_sizes.sum()))
    block_values[slot_offsets[block] + row * merged_sizes[term_b] + col] = values

    merged = CrossProducts(
        term_sizes=merged_sizes,
        term_levels=merged_levels,
        column_offsets=merged_offsets,
        slot_term_a=blocks[0].astype(np.int64),
        slot_term_b=blocks[1].astype(np.int64),
        slot_level_a=blocks[2].astype(np.int64),
        slot_level_b=blocks[3].astype(np.int64),
        slot_offsets=slot_offsets,
        block_values=block_values,
        ZtXy=np.zeros((cp.q, 0)),
        XytXy=cp.XytXy,
        n=cp.n,
        sum_log_weights=cp.sum_log_weights,
    )
    merged_layout = ThetaLayout.from_sizes(merged_sizes.tolist())
    position_of = {
        (int(t), int(r), int(c)): index
        for index, (t, r, c) in enumerate(zip(merged_layout.term_of, merged_layout.rows, merged_layout.cols))
    }
    theta_index = np.asarray(
        [
            position_of[(int(term_of[t]), int(first_row[t] + r), int(first_row[t] + c))]
            for t, r, c in zip(layout.term_of, layout.rows, layout.cols)
        ],
        dtype=np.int64,
    )
    return MergedTerms(
        cross_products=merged,
        layout=merged_layout,
        theta_index=theta_index,
        permutation=permutation,
        blocks=tuple((int(term_of[t]), int(first_row[t])) for t in range(len(keys))),
    )
