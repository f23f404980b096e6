"""Cross-products A = [Z X y]'[Z X y], formed once, in one pass per term pair.

Z'Z is kept as small dense blocks, one per pair of levels that co-occur in some row
(``Z_a[level i]' Z_b[level j]``, k_a × k_b); within one term only the diagonal blocks exist.
Everything the optimiser needs afterwards lives here; nothing later touches the n rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numba
import numpy as np

from lmmfast.design.random import RandomTerm
from lmmfast.errors import DataError


@numba.njit(cache=True, nogil=True)
def accumulate_outer(slot: np.ndarray, left: np.ndarray, right: np.ndarray, out: np.ndarray) -> None:
    """``out[slot[i]] += outer(left[i], right[i])`` for every row i."""
    n = slot.shape[0]
    ka = left.shape[1]
    kb = right.shape[1]
    for i in range(n):
        s = slot[i]
        for a in range(ka):
            la = left[i, a]
            if la == 0.0:
                continue
            for b in range(kb):
                out[s, a, b] += la * right[i, b]


@dataclass(frozen=True)
class CrossProducts:
    """The blocks of [Z X y]'[Z X y] and what is needed to address them.

    Attributes
    ----------
    term_sizes, term_levels : numpy.ndarray
        k and number of levels per term (engine order).
    column_offsets : numpy.ndarray
        First column of each term in Z.
    slot_term_a, slot_term_b, slot_level_a, slot_level_b : numpy.ndarray
        For each stored Z'Z block: the row term and level, and the column term and level
        (``term_a >= term_b``).
    slot_offsets : numpy.ndarray
        Start of each block (row-major k_a × k_b) in ``block_values``.
    block_values : numpy.ndarray
    ZtXy : numpy.ndarray, shape (q, p + 1)
        Z'[X y].
    XytXy : numpy.ndarray, shape (p + 1, p + 1)
        [X y]'[X y].
    n : int
        Number of observations.
    sum_log_weights : float
        Σ log wᵢ of the prior weights (0 without weights).
    """

    term_sizes: np.ndarray
    term_levels: np.ndarray
    column_offsets: np.ndarray
    slot_term_a: np.ndarray
    slot_term_b: np.ndarray
    slot_level_a: np.ndarray
    slot_level_b: np.ndarray
    slot_offsets: np.ndarray
    block_values: np.ndarray
    ZtXy: np.ndarray
    XytXy: np.ndarray
    n: int
    sum_log_weights: float

    @property
    def q(self) -> int:
        """Total number of random effects (Z'[X y]'s rows)."""
        return self.ZtXy.shape[0]

    @property
    def p(self) -> int:
        """Number of fixed-effects columns."""
        return self.XytXy.shape[0] - 1

    def with_response(
        self, terms: Sequence[RandomTerm], X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
    ) -> CrossProducts:
        """The cross-products of the same Z and X with a new response ``y``: Z'y, X'y and y'y
        are formed again (one pass over the rows), everything else is shared.

        Examples
        --------
        >>> from lmmfast.design.random import RandomTerm
        >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
        >>> cp = form_cross_products([t], np.ones((3, 1)), np.array([1.0, 2.0, 3.0]))
        >>> cp.with_response([t], np.ones((3, 1)), np.array([0.0, 1.0, 1.0])).ZtXy.tolist()
        [[2.0, 1.0], [1.0, 1.0]]
        """
        Xy = weighted_xy(X, y, weights)
        wy = Xy[:, -1:]
        root = np.sqrt(weights) if weights is not None else np.ones(len(y))
        ZtXy = self.ZtXy.copy()
        ZtXy[:, -1] = 0.0
        for index, term in enumerate(terms):
            start = int(self.column_offsets[index])
            view = ZtXy[start : start + term.n_levels * term.k, -1:].reshape(term.n_levels, term.k, 1)
            accumulate_outer(term.codes, term.values * root[:, None], wy, view)
        # all of [X y]'[X y] again, as form_cross_products forms it: the same numbers to the
        # last bit, so a refit to a response is the fit a new model of it would be
        XytXy = gram(Xy)
        return replace(self, ZtXy=ZtXy, XytXy=XytXy)

    def with_fixed_columns(self, columns: Sequence[int]) -> CrossProducts:
        """The cross-products of the same rows with only the fixed-effects ``columns``
        (indices into X; the response stays last).

        Examples
        --------
        >>> from lmmfast.design.random import RandomTerm
        >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
        >>> cp = form_cross_products([t], np.ones((3, 2)), np.array([1.0, 2.0, 3.0]))
        >>> cp.with_fixed_columns([1]).XytXy.tolist()
        [[3.0, 6.0], [6.0, 14.0]]
        """
        with_y = [*(int(c) for c in columns), self.p]
        return replace(self, ZtXy=self.ZtXy[:, with_y], XytXy=self.XytXy[np.ix_(with_y, with_y)])


def weighted_xy(X: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """[X y], each row scaled by √w where there are weights."""
    Xy = np.empty((len(y), X.shape[1] + 1))
    Xy[:, :-1] = X
    Xy[:, -1] = y
    if weights is not None:
        Xy *= np.sqrt(weights)[:, None]
    return Xy


def gram(Xy: np.ndarray) -> np.ndarray:
    """[X y]'[X y] (overflow is left to the caller to report, in words)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return Xy.T @ Xy


@numba.njit(cache=True, nogil=True)
def _counting_order(keys, bound, within):
    """The stable order of ``within`` (row indices) by ``keys[within]``, keys below ``bound``."""
    start = np.zeros(bound + 1, dtype=np.int64)
    for i in within:
        start[keys[i] + 1] += 1
    for value in range(bound):
        start[value + 1] += start[value]
    out = np.empty_like(within)
    for i in within:
        out[start[keys[i]]] = i
        start[keys[i]] += 1
    return out


@numba.njit(cache=True, nogil=True)
def _sorted_pairs(codes_a, n_a, codes_b, n_b):
    """Rows ordered by (level of a, level of b) in two counting sorts, then each distinct
    pair numbered in that order: the slot of every row and the levels of every slot."""
    order = _counting_order(codes_a, n_a, _counting_order(codes_b, n_b, np.arange(codes_a.shape[0])))
    slot = np.empty(codes_a.shape[0], dtype=np.int64)
    level_a = np.empty(codes_a.shape[0], dtype=np.int64)
    level_b = np.empty(codes_a.shape[0], dtype=np.int64)
    used = -1
    for i in order:
        if used < 0 or codes_a[i] != level_a[used] or codes_b[i] != level_b[used]:
            used += 1
            level_a[used] = codes_a[i]
            level_b[used] = codes_b[i]
        slot[i] = used
    return slot, level_a[: used + 1].copy(), level_b[: used + 1].copy()


def _pair_slots(a: RandomTerm, b: RandomTerm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row block index for the pair (a, b), and each block's levels of a and of b, the
    blocks numbered in order of (level of a, level of b) as :func:`numpy.unique` would
    number the pairs, in linear time (two counting sorts instead of sorting the pairs)."""
    return _sorted_pairs(
        a.codes.astype(np.int64, copy=False), int(a.n_levels), b.codes.astype(np.int64, copy=False), int(b.n_levels)
    )


#: Per pair of terms (a, b ≤ a, in the order :func:`form_cross_products` visits them): each
#: row's block, and each block's level of a and of b.
PairPattern = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def pair_pattern(terms: Sequence[RandomTerm]) -> PairPattern:
    """Which Z'Z block every row adds to, per pair of terms: the part of the cross-products
    that depends on the grouping alone, found once for models that form their cross-products
    again with new weights (generalized models, once per PIRLS iteration).

    Examples
    --------
    >>> from lmmfast.design.random import RandomTerm
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
    >>> [slot.tolist() for slot, _, _ in pair_pattern([t])]
    [[0, 0, 1]]
    """
    out: PairPattern = []
    for ia, a in enumerate(terms):
        for ib in range(ia + 1):
            if ia == ib:
                out.append((a.codes, np.arange(a.n_levels, dtype=np.int64), np.arange(a.n_levels, dtype=np.int64)))
            else:
                out.append(_pair_slots(a, terms[ib]))
    return out


def form_cross_products(
    terms: Sequence[RandomTerm],
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    pairs: PairPattern | None = None,
) -> CrossProducts:
    """Form every cross-product the profiled objective needs.

    Parameters
    ----------
    terms : sequence of RandomTerm
        In the engine's order.
    X : numpy.ndarray, shape (n, p)
    y : numpy.ndarray, shape (n,)
    weights : numpy.ndarray, optional
        Positive prior weights; rows enter scaled by √w.
    pairs : PairPattern, optional
        :func:`pair_pattern` of ``terms``, where it is already known.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmfast.design.random import RandomTerm
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
    >>> cp = form_cross_products([t], np.ones((3, 1)), np.array([1.0, 2.0, 3.0]))
    >>> cp.block_values.tolist(), cp.ZtXy.tolist()
    ([2.0, 1.0], [[2.0, 3.0], [1.0, 3.0]])
    """
    n = len(y)
    Xy = weighted_xy(X, y, weights)
    sum_log_weights = 0.0
    if weights is not None:
        root = np.sqrt(weights)
        sum_log_weights = float(np.sum(np.log(weights)))
    values = [t.values * root[:, None] if weights is not None else t.values for t in terms]

    sizes = np.asarray([t.k for t in terms], dtype=np.int64)
    levels = np.asarray([t.n_levels for t in terms], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes * levels)[:-1]]).astype(np.int64)

    ZtXy = np.zeros((int(np.sum(sizes * levels)), Xy.shape[1]))
    slot_a, slot_b, level_a, level_b, blocks = [], [], [], [], []
    pattern = iter(pair_pattern(terms) if pairs is None else pairs)
    for ia, a in enumerate(terms):
        view = ZtXy[offsets[ia] : offsets[ia] + a.n_levels * a.k].reshape(a.n_levels, a.k, Xy.shape[1])
        accumulate_outer(a.codes, values[ia], Xy, view)
        for ib in range(ia + 1):
            b = terms[ib]
            slot, la, lb = next(pattern)
            block = np.zeros((len(la), a.k, b.k))
            accumulate_outer(slot, values[ia], values[ib], block)
            slot_a.append(np.full(len(la), ia, dtype=np.int64))
            slot_b.append(np.full(len(la), ib, dtype=np.int64))
            level_a.append(la.astype(np.int64))
            level_b.append(lb.astype(np.int64))
            blocks.append(block.ravel())

    XytXy = gram(Xy)
    if not (np.all(np.isfinite(ZtXy)) and np.all(np.isfinite(XytXy))):
        raise DataError(
            "The cross-products of the data overflow double precision (values near 1e154 or beyond); "
            "rescale the response and predictors, e.g. to other units."
        )
    slot_term_a = np.concatenate(slot_a)
    slot_term_b = np.concatenate(slot_b)
    block_sizes = sizes[slot_term_a] * sizes[slot_term_b]
    return CrossProducts(
        term_sizes=sizes,
        term_levels=levels,
        column_offsets=offsets,
        slot_term_a=slot_term_a,
        slot_term_b=slot_term_b,
        slot_level_a=np.concatenate(level_a),
        slot_level_b=np.concatenate(level_b),
        slot_offsets=np.concatenate([[0], np.cumsum(block_sizes)[:-1]]).astype(np.int64),
        block_values=np.concatenate(blocks),
        ZtXy=ZtXy,
        XytXy=XytXy,
        n=n,
        sum_log_weights=sum_log_weights,
    )


@dataclass(frozen=True)
class RowPattern:
    """Everything about the rows that cross-products of new weights need, laid out for one
    fused pass (:func:`form_weighted_cross_products`): the terms' level codes and columns side
    by side, and each pair of terms' block index per row.

    Attributes
    ----------
    shape : CrossProducts
        Cross-products of the same terms (any weights): sizes, levels, offsets, blocks.
    codes : numpy.ndarray, shape (terms, n)
    values : numpy.ndarray, shape (n, columns of all terms)
    first_column : numpy.ndarray
        Each term's first column in ``values``.
    slots : numpy.ndarray, shape (pairs, n)
    pair_terms : numpy.ndarray, shape (pairs, 2)
    pair_starts : numpy.ndarray
        Where each pair's blocks start in ``block_values``.
    """

    shape: CrossProducts
    codes: np.ndarray
    values: np.ndarray
    first_column: np.ndarray
    slots: np.ndarray
    pair_terms: np.ndarray
    pair_starts: np.ndarray

    @property
    def all_scalar(self) -> bool:
        """Whether every term has one column (the written-out kernel applies)."""
        return self.values.shape[1] == self.codes.shape[0]

    @classmethod
    def of(cls, terms: Sequence[RandomTerm], pairs: PairPattern, shape: CrossProducts) -> RowPattern:
        """The pattern of ``terms`` (engine order), ``pairs`` their :func:`pair_pattern`,
        ``shape`` any cross-products of them."""
        sizes = np.array([t.k for t in terms], dtype=np.int64)
        pair_terms = np.array([(a, b) for a in range(len(terms)) for b in range(a + 1)], dtype=np.int64)
        counts = [len(levels) for _, levels, _ in pairs]
        widths = sizes[pair_terms[:, 0]] * sizes[pair_terms[:, 1]]
        starts = np.concatenate([[0], np.cumsum(np.asarray(counts) * widths)[:-1]]).astype(np.int64)
        return cls(
            shape=shape,
            codes=np.ascontiguousarray(np.stack([t.codes.astype(np.int64) for t in terms])),
            values=np.ascontiguousarray(np.hstack([t.values for t in terms])),
            first_column=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
            slots=np.ascontiguousarray(np.stack([slot.astype(np.int64) for slot, _, _ in pairs])),
            pair_terms=pair_terms,
            pair_starts=starts,
        )


@numba.njit(cache=True, nogil=True)
def _accumulate_weighted(
    codes, values, first_column, sizes, column_offsets, slots, pair_terms, pair_starts, y, root, Zty, blocks
):
    """One pass over the rows: Z'WZ's blocks and Z'Wy with √w = ``root``; returns y'Wy."""
    n = y.shape[0]
    terms = codes.shape[0]
    scaled = np.empty(values.shape[1])
    total = 0.0
    for i in range(n):
        r = root[i]
        ry = y[i] * r
        total += ry * ry
        for j in range(values.shape[1]):
            scaled[j] = values[i, j] * r
        for t in range(terms):
            k = sizes[t]
            row = column_offsets[t] + codes[t, i] * k
            first = first_column[t]
            for a in range(k):
                Zty[row + a] += scaled[first + a] * ry
        for pair in range(pair_terms.shape[0]):
            ta = pair_terms[pair, 0]
            tb = pair_terms[pair, 1]
            ka = sizes[ta]
            kb = sizes[tb]
            base = pair_starts[pair] + slots[pair, i] * ka * kb
            fa = first_column[ta]
            fb = first_column[tb]
            for a in range(ka):
                za = scaled[fa + a]
                for b in range(kb):
                    blocks[base + a * kb + b] += za * scaled[fb + b]
    return total


#: Rows per block of :func:`_accumulate_weighted_scalar`: [X y]'W[X y] is summed a block at a
#: time, in registers, not row by row in memory.
ROW_BLOCK = 64


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _add_gram(columns, rows, out):
    """``out[a, c] += Σ_{i < rows} columns[a, i] columns[c, i]`` for c ≤ a (sums reassociated:
    vectorised)."""
    for a in range(columns.shape[0]):
        for c in range(a + 1):
            total = 0.0
            for i in range(rows):
                total += columns[a, i] * columns[c, i]
            out[a, c] += total


@numba.njit(cache=True, nogil=True)
def _accumulate_weighted_scalar(
    codes, values, column_offsets, slots, pair_terms, pair_starts, X, y, root, ZtXy, blocks, XytXy
):
    """:func:`_accumulate_weighted` where every term has one column (random intercepts: the
    common case, written out), Z'W[X y] and [X y]'W[X y] included."""
    n = y.shape[0]
    p = X.shape[1]
    terms = codes.shape[0]
    pairs = pair_terms.shape[0]
    scaled = np.empty(terms)
    xy = np.empty((p + 1, ROW_BLOCK))  # a block's rows of √w [X y], column-major
    for start in range(0, n, ROW_BLOCK):
        rows = min(ROW_BLOCK, n - start)
        for local in range(rows):
            i = start + local
            r = root[i]
            for c in range(p):
                xy[c, local] = X[i, c] * r
            xy[p, local] = y[i] * r
            for t in range(terms):
                z = values[i, t] * r
                scaled[t] = z
                row = column_offsets[t] + codes[t, i]
                for c in range(p + 1):
                    ZtXy[row, c] += z * xy[c, local]
            for pair in range(pairs):
                blocks[pair_starts[pair] + slots[pair, i]] += scaled[pair_terms[pair, 0]] * scaled[pair_terms[pair, 1]]
        _add_gram(xy, rows, XytXy)
    for a in range(p + 1):
        for c in range(a):
            XytXy[c, a] = XytXy[a, c]


def form_weighted_cross_products(
    pattern: RowPattern, X: np.ndarray, y: np.ndarray, root_weights: np.ndarray
) -> CrossProducts:
    """The cross-products of ``pattern``'s terms, ``X`` and ``y`` with rows scaled by
    ``root_weights`` (√w), in one pass: what :func:`form_cross_products` forms, for weights
    that change every iteration (a generalized model's PIRLS), without its temporaries.

    Examples
    --------
    >>> from lmmfast.design.random import RandomTerm
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
    >>> X, y, w = np.ones((3, 1)), np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 1.0])
    >>> shape = form_cross_products([t], X, y)
    >>> cp = form_weighted_cross_products(RowPattern.of([t], pair_pattern([t]), shape), X, y, np.sqrt(w))
    >>> cp.block_values.tolist(), cp.ZtXy.tolist()
    ([5.0, 1.0], [[5.0, 9.0], [1.0, 3.0]])
    """
    shape = pattern.shape
    X = np.ascontiguousarray(X, dtype=np.float64)
    p = X.shape[1]
    y = np.ascontiguousarray(y, dtype=np.float64)
    ZtXy = np.zeros((shape.q, p + 1))
    blocks = np.zeros_like(shape.block_values)
    XytXy = np.zeros((p + 1, p + 1))
    scalar = pattern.all_scalar
    if scalar:
        _accumulate_weighted_scalar(
            pattern.codes,
            pattern.values,
            shape.column_offsets,
            pattern.slots,
            pattern.pair_terms,
            pattern.pair_starts,
            X,
            y,
            root_weights,
            ZtXy,
            blocks,
            XytXy,
        )
    else:
        Zty = np.zeros(shape.q)
        yty = _accumulate_weighted(
            pattern.codes,
            pattern.values,
            pattern.first_column,
            shape.term_sizes,
            shape.column_offsets,
            pattern.slots,
            pattern.pair_terms,
            pattern.pair_starts,
            y,
            root_weights,
            Zty,
            blocks,
        )
        XytXy[p, p] = yty
        if p:
            # X'WX by BLAS; Z'WX one term at a time
            Xw = X * root_weights[:, None]
            ZtX = np.zeros((shape.q, p))
            for t in range(len(shape.term_sizes)):
                k, start = int(shape.term_sizes[t]), int(shape.column_offsets[t])
                first = int(pattern.first_column[t])
                view = ZtX[start : start + int(shape.term_levels[t]) * k].reshape(-1, k, p)
                values = pattern.values[:, first : first + k] * root_weights[:, None]
                accumulate_outer(pattern.codes[t], values, Xw, view)
            ZtXy[:, :p] = ZtX
            XytXy[:p, :p] = Xw.T @ Xw
            XytXy[:p, p] = XytXy[p, :p] = Xw.T @ (y * root_weights)
        ZtXy[:, p] = Zty
    # the constructor, not dataclasses.replace: this runs once per PIRLS iteration
    return CrossProducts(
        shape.term_sizes,
        shape.term_levels,
        shape.column_offsets,
        shape.slot_term_a,
        shape.slot_term_b,
        shape.slot_level_a,
        shape.slot_level_b,
        shape.slot_offsets,
        blocks,
        ZtXy,
        XytXy,
        shape.n,
        0.0,
    )


def level_blocks(cp: CrossProducts, term: int) -> np.ndarray:
    """The engine term's diagonal blocks of Z'Z, one k × k block per level, (levels, k, k).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> p = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> level_blocks(p.objective.cross_products, 0)[0].tolist()  # a subject's 10 days, 0 to 9
    [[10.0, 45.0], [45.0, 285.0]]
    """
    k, levels = int(cp.term_sizes[term]), int(cp.term_levels[term])
    slots = np.flatnonzero((cp.slot_term_a == term) & (cp.slot_term_b == term))
    values = cp.block_values[cp.slot_offsets[slots][:, None] + np.arange(k * k)]
    blocks = np.zeros((levels, k, k))
    blocks[cp.slot_level_a[slots]] = values.reshape(len(slots), k, k)
    return blocks
