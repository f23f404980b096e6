"""The blocked path for crossed designs (after MixedModels.jl; docs/design.md, "Factorisation").

Λ'Z'ZΛ + I is split at the first term: its block is block-diagonal (one k×k block per
level) and is factored level by level with no fill; its coupling to the later terms is
scaled and eliminated into the later terms' block with a sparse rank update, and that block,
dense for crossed factors, is factored by LAPACK ``potrf``:

    [A11  .  ]   [L11  0 ] [L11' L21']
    [A21  A22] = [L21 L22] [0    L22'],   L21 = A21 L11'⁻¹,   L22 L22' = A22 − L21 L21'.

The update L21 L21' takes one of three routes, whichever is estimated cheapest: the
scattered sparse kernels (:mod:`~lmmfast.factor.rank_update`), BLAS on a dense copy of L21
where the coupling is dense (:mod:`~lmmfast.factor.dense_coupling`), or per-count sums for
balanced scalar designs (:mod:`~lmmfast.factor.grouped_coupling`). There is no
permutation: the terms come in the engine's order (terms on one grouping factor already
merged, :mod:`lmmfast.design.amalgamate`).
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numba
import numpy as np
from scipy.linalg import lapack

from lmmfast.blas import idle_spin_seconds, limit_blas_threads
from lmmfast.crossprod import CrossProducts
from lmmfast.errors import ArgumentError
from lmmfast.factor.blas_threads import FACTOR_SECONDS_PER_MADD, choose_blas_threads, inverse_blas_threads
from lmmfast.factor.blocked_layout import band_positions, run_index
from lmmfast.factor.dense_coupling import prefer_dense
from lmmfast.factor.first_term_solves import join_rows, split_rows
from lmmfast.factor.grouped_coupling import prefer_grouped
from lmmfast.factor.inverse_blocks import (
    dense_block_inverse,
    dense_diagonal_blocks,
    dense_value_positions,
    logdet_trace_sums,
)
from lmmfast.factor.kernels import sandwich_block, scale_blocks
from lmmfast.factor.ordering import stable_order
from lmmfast.factor.plan import FactorPlan
from lmmfast.factor.rank_update import (
    PARALLEL_COLUMNS,
    PARALLEL_WORK,
    UpdatePattern,
    available_cores,
)
from lmmfast.factor.routes import CouplingEntries, CouplingRoute, make_route
from lmmfast.factor.zz_product import dense_block_times
from lmmfast.parameters import ThetaLayout


@numba.njit(cache=True, nogil=True)
def _eliminate_first_term(
    k1,
    first_values,
    cross_ptr,
    cross_term,
    cross_offsets,
    cross_values,
    sizes,
    templates,
    template_offsets,
    diagonal_terms,
    L11,
    L21,
):
    """Factor the first term level by level and form L21 = Λ₂'Z₂'Z₁Λ₁ L11'⁻¹. Returns −1, or
    the first level whose block is not numerically positive definite (cancellation in data
    of extreme scale: mathematically the blocks are at least I). ``diagonal_terms`` marks
    the terms whose templates have no θ below the diagonal (merged ``||`` pieces), whose
    sandwiches are scalings."""
    n1 = first_values.shape[0] // (k1 * k1)
    most = k1
    for t in range(sizes.shape[0]):
        most = max(most, sizes[t])
    work = np.empty(most * k1)
    block = np.empty(k1 * k1)
    scratch = np.empty((k1, k1))
    # the first term's template diagonal, for diagonal templates
    first_scale = np.empty(k1)
    for a in range(k1):
        first_scale[a] = templates[template_offsets[0] + a * k1 + a]
    first_diagonal = diagonal_terms[0]
    for j in range(n1):
        # A11_j = Λ1' B_j Λ1 + I, then its Cholesky factor in place
        if first_diagonal:
            for a in range(k1):
                for b in range(k1):
                    block[a * k1 + b] = first_scale[a] * first_values[j * k1 * k1 + a * k1 + b] * first_scale[b]
        else:
            sandwich_block(
                first_values, j * k1 * k1, k1, k1, templates, template_offsets[0], template_offsets[0], work, block, 0
            )
        for a in range(k1):
            for b in range(k1):
                scratch[a, b] = block[a * k1 + b]
            scratch[a, a] += 1.0
        for c in range(k1):
            diag = scratch[c, c]
            for p in range(c):
                diag -= L11[j, c, p] * L11[j, c, p]
            if not diag > 0.0:
                return j
            diag = np.sqrt(diag)
            L11[j, c, c] = diag
            for r in range(c + 1, k1):
                acc = scratch[r, c]
                for p in range(c):
                    acc -= L11[j, r, p] * L11[j, c, p]
                L11[j, r, c] = acc / diag
            for r in range(c):
                L11[j, r, c] = 0.0
        # L21 blocks of this level: C = Λa' X Λ1, then solve L21 L11' = C row by row
        if k1 == 1:  # scalar first term: L21 = Λa' x t₁ / l₁₁, scalar blocks without loops
            factor = templates[template_offsets[0]] / L11[j, 0, 0]
            for s in range(cross_ptr[j], cross_ptr[j + 1]):
                t = cross_term[s]
                base = cross_offsets[s]
                if sizes[t] == 1:
                    L21[base] = templates[template_offsets[t]] * cross_values[base] * factor
                    continue
                sandwich_block(
                    cross_values,
                    base,
                    sizes[t],
                    1,
                    templates,
                    template_offsets[t],
                    template_offsets[0],
                    work,
                    L21,
                    base,
                )
                for i in range(sizes[t]):
                    L21[base + i] /= L11[j, 0, 0]
            continue
        f00 = f10 = f11 = l00 = l10 = l11 = 0.0
        if k1 == 2:  # correlated slopes on the first term: 2×2 blocks written out
            f00 = templates[template_offsets[0]]
            f10 = templates[template_offsets[0] + 2]
            f11 = templates[template_offsets[0] + 3]
            l00 = L11[j, 0, 0]
            l10 = L11[j, 1, 0]
            l11 = L11[j, 1, 1]
        for s in range(cross_ptr[j], cross_ptr[j + 1]):
            t = cross_term[s]
            ka = sizes[t]
            base = cross_offsets[s]
            if k1 == 2 and ka == 2:
                lam = template_offsets[t]
                a00 = templates[lam]
                a10 = templates[lam + 2]
                a11 = templates[lam + 3]
                # X Λ₁, then Λa' times it, then the rows of C L11'⁻¹
                s00 = cross_values[base] * f00 + cross_values[base + 1] * f10
                s01 = cross_values[base + 1] * f11
                s10 = cross_values[base + 2] * f00 + cross_values[base + 3] * f10
                s11 = cross_values[base + 3] * f11
                for i in range(2):
                    c0 = a00 * s00 + a10 * s10 if i == 0 else a11 * s10
                    c1 = a00 * s01 + a10 * s11 if i == 0 else a11 * s11
                    first = c0 / l00
                    L21[base + 2 * i] = first
                    L21[base + 2 * i + 1] = (c1 - first * l10) / l11
                continue
            if first_diagonal and diagonal_terms[t]:
                lam = template_offsets[t]
                for i in range(ka):
                    scale = templates[lam + i * ka + i]
                    for b in range(k1):
                        L21[base + i * k1 + b] = scale * cross_values[base + i * k1 + b] * first_scale[b]
            else:
                sandwich_block(
                    cross_values, base, ka, k1, templates, template_offsets[t], template_offsets[0], work, L21, base
                )
            for i in range(ka):
                for b in range(k1):
                    acc = L21[base + i * k1 + b]
                    for p in range(b):
                        acc -= L21[base + i * k1 + p] * L11[j, b, p]
                    L21[base + i * k1 + b] = acc / L11[j, b, b]
    return -1


class BlockedFactor:
    """Cholesky of Λ'Z'ZΛ + I by eliminating the first term level by level into a dense block.

    Best when the later terms' block is small or dense after elimination (crossed designs,
    one term, nested designs with few upper levels). ``dense_size`` is that block's order.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmfast.crossprod import form_cross_products
    >>> from lmmfast.design.random import RandomTerm
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
    >>> f = BlockedFactor(form_cross_products([t], np.ones((3, 1)), np.ones(3)), ThetaLayout.from_sizes([1]))
    >>> f.update(np.array([1.0]))
    >>> bool(abs(f.logdet() - np.log(6.0)) < 1e-12)
    True
    """

    def __init__(
        self,
        cross_products: CrossProducts,
        layout: ThetaLayout,
        max_threads: int | None = None,
        route: str = "auto",
        estimated_bytes: int = 0,
        merged_terms: bool = False,
        varying_weights: bool = False,
    ) -> None:
        #: whether the terms are merged ones (:mod:`lmmfast.design.amalgamate`), for the plan
        self._merged_terms = merged_terms
        cp = cross_products
        self._cp = cp
        self._layout = layout
        self._template_offsets = layout.template_offsets
        # terms whose templates have no θ below the diagonal (merged ``||`` pieces)
        self._diagonal_terms = np.ones(len(cp.term_sizes), dtype=np.bool_)
        self._diagonal_terms[layout.term_of[layout.rows != layout.cols]] = False
        sizes = cp.term_sizes
        self._k1 = int(sizes[0])
        self._n1 = int(cp.term_levels[0])
        self._q1 = self._n1 * self._k1
        q2 = cp.q - self._q1
        self.dense_size = q2

        first = np.flatnonzero((cp.slot_term_a == 0) & (cp.slot_term_b == 0))
        first = first[np.argsort(cp.slot_level_a[first])]
        block = self._k1 * self._k1
        # where the factor's copies of Z'Z's values come from, to take them again from
        # cross-products of new weights (:meth:`with_cross_products`)
        self._first_gather = (cp.slot_offsets[first][:, None] + np.arange(block)[None, :]).ravel()
        self._first_values = cp.block_values[self._first_gather]

        cross = np.flatnonzero((cp.slot_term_b == 0) & (cp.slot_term_a > 0))
        rows = (
            cp.column_offsets[cp.slot_term_a[cross]] - self._q1 + cp.slot_level_a[cross] * sizes[cp.slot_term_a[cross]]
        )
        order = stable_order((rows, cp.slot_level_b[cross]), (max(q2, 1), self._n1))
        cross, rows = cross[order], rows[order]
        widths = sizes[cp.slot_term_a[cross]] * self._k1
        cross_row = rows.astype(np.int64)
        cross_term = cp.slot_term_a[cross].astype(np.int64)
        cross_offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        cross_ptr = np.zeros(self._n1 + 1, dtype=np.int64)
        np.cumsum(np.bincount(cp.slot_level_b[cross], minlength=self._n1), out=cross_ptr[1:])
        cross_level = cp.slot_level_b[cross].astype(np.int64)
        self._cross_gather = run_index(cp.slot_offsets[cross], widths)
        self._all_scalar = self._k1 == 1 and bool(np.all(sizes[1:] == 1))
        # per later term, where its coupling blocks' values sit (None: all of them)
        term_entries: list[tuple[int, np.ndarray | None]] = []
        for t in range(1, len(sizes)):
            blocks = np.flatnonzero(cross_term == t)
            if len(blocks) == len(cross_term):
                term_entries.append((t, None))
            elif len(blocks):
                width = int(sizes[t]) * self._k1
                term_entries.append((t, (cross_offsets[blocks][:, None] + np.arange(width)).ravel()))
        # one entry per (first-term level, row of S) it touches, level by level, rows sorted;
        # entry e's k₁ values sit at L21[e k₁ : (e + 1) k₁]
        heights = sizes[cross_term]
        within = np.arange(int(heights.sum())) - np.repeat(np.cumsum(heights) - heights, heights)
        entry_ptr = np.zeros(self._n1 + 1, dtype=np.int64)
        np.cumsum(np.bincount(cross_level, weights=heights, minlength=self._n1).astype(np.int64), out=entry_ptr[1:])
        col_term = np.repeat(np.arange(1, len(sizes)), cp.term_levels[1:] * sizes[1:]).astype(np.int64)
        col_index = (np.arange(q2) - (cp.column_offsets[col_term] - self._q1)) % sizes[col_term]
        # the k columns of a vector-valued term's level are touched together
        groups = np.append(np.flatnonzero(col_index == 0), q2).astype(np.int64)
        pattern = UpdatePattern.build(self._k1, entry_ptr, np.repeat(cross_row, heights) + within, q2, groups)
        entries = CouplingEntries(
            k1=self._k1,
            n1=self._n1,
            ptr=cross_ptr,
            row=cross_row,
            term=cross_term,
            offsets=cross_offsets,
            values=cp.block_values[self._cross_gather],
            sizes=sizes,
            entry_ptr=entry_ptr,
            entry_level=np.repeat(np.arange(self._n1, dtype=np.int64), np.diff(entry_ptr)),
            pattern=pattern,
            term_entries=term_entries,
            all_scalar=self._all_scalar,
        )
        #: threads for the sparse passes: more than one only where the work pays for them
        worth_sharing = pattern.work >= PARALLEL_WORK and q2 >= PARALLEL_COLUMNS
        cores = available_cores() if max_threads is None else min(max_threads, available_cores())
        self.threads = cores if worth_sharing else 1
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
        #: the θ the factor holds (None before the first update and after a failed one)
        self._theta: np.ndarray | None = None
        #: the coupling's patterns without its values, for :meth:`refill`
        self._entries = replace(entries, values=np.empty(0))
        #: the coupling's route (:mod:`lmmfast.factor.routes`); sparse where there is no dense block
        self._route: CouplingRoute = make_route(
            self._choose_route(route, q2, entries, varying_weights) or "sparse", entries, self._first_values
        )
        sparse = self._route.name == "sparse"
        self._estimated_bytes = estimated_bytes + self.route_bytes
        # one evaluation: ``potrf`` of the dense block and the route's update
        self._estimated_seconds = FACTOR_SECONDS_PER_MADD * q2**3 / 3 + self._route.update_seconds(
            self._q1, q2, self.threads
        )
        #: BLAS threads the fit should use (None: BLAS's default; :func:`choose_blas_threads`)
        self.blas_threads = choose_blas_threads(
            q2, pattern.work if sparse else 0.0, self.threads, idle_spin_seconds(os.environ)
        )
        if max_threads is not None:
            self.blas_threads = min(self.blas_threads or max_threads, max_threads)
        self._inverse_blas_threads = inverse_blas_threads(q2, self.blas_threads, cores)

        # the blocks of Z'Z within the dense part: terms, first row and column in it, values
        in_dense = np.flatnonzero(cp.slot_term_b > 0)
        dense_a, dense_b = cp.slot_term_a[in_dense], cp.slot_term_b[in_dense]
        dense_widths = sizes[dense_a] * sizes[dense_b]
        self._dense_gather = run_index(cp.slot_offsets[in_dense], dense_widths)
        self._dense_slots = (
            dense_a.astype(np.int64),
            dense_b.astype(np.int64),
            (cp.column_offsets[dense_a] - self._q1 + cp.slot_level_a[in_dense] * sizes[dense_a]).astype(np.int64),
            (cp.column_offsets[dense_b] - self._q1 + cp.slot_level_b[in_dense] * sizes[dense_b]).astype(np.int64),
            np.concatenate([[0], np.cumsum(dense_widths)[:-1]]).astype(np.int64),
            cp.block_values[self._dense_gather],
        )

        self._col_term = col_term
        #: where :meth:`inverse_on_pattern` reads the dense block's values (made on first use)
        self._dense_positions: tuple[np.ndarray, np.ndarray] | None = None
        self._band_positions = band_positions(sizes, self._template_offsets, col_term, col_index.astype(np.int64))
        # the numbers of the factor, made by the first update: a fresh copy shares the rest
        self._S = self._L22 = np.empty((0, 0), order="F")
        self._L11 = np.empty((0, self._k1, self._k1))
        self._L21 = np.empty(0)

    @property
    def route_bytes(self) -> int:
        """Bytes the coupling route holds beyond :func:`lmmfast.factor.choose.blocked_bytes`:
        on the dense route, Z₂'Z₁, T₁'Z₁'Z₂ and L21 as dense arrays, and the gradient's W, Y
        and Z₁'Z₂Λ₂ for a moment (:mod:`lmmfast.factor.dense_coupling`)."""
        return 6 * 8 * self._q1 * self.dense_size if self._route.name == "dense" else 0

    @property
    def estimated_bytes(self) -> int:
        """The fit's memory beyond the data, as :func:`lmmfast.factor.make_factor` estimated it
        (the design's arrays and this factor's), with the route's copies."""
        return self._estimated_bytes

    def _choose_route(self, asked: str, q2: int, entries: CouplingEntries, varying_weights: bool) -> str | None:
        """The coupling route: the one asked for, or the one estimated cheapest (None where
        there is no dense block). ``varying_weights``: the values will be replaced by those
        of other weights (:meth:`with_cross_products`), so per-count sums do not apply."""
        if not q2:
            return None
        if asked == "grouped" and (varying_weights or not self._all_scalar):
            raise ArgumentError(
                "coupling='grouped' sums the coupling per distinct level count, which needs random intercepts "
                "only and the same weights throughout (not a generalized model); use coupling='dense', "
                "'sparse' or 'auto'."
            )
        if asked != "auto":
            return asked
        dense = prefer_dense(entries.pattern, self._q1, q2, self.threads)
        if self._all_scalar and not varying_weights:
            counts = len(np.unique(self._first_values))
            # per update and gradient: about 4 G q2² multiply-adds grouped, 1.5 q2² q1 dense
            grouped = prefer_grouped(entries.pattern, counts, q2, self.threads)
            if grouped and not (dense and 1.5 * self._q1 < 4 * counts):
                return "grouped"
        return "dense" if dense else "sparse"

    def _allocate(self) -> None:
        q2 = self.dense_size
        self._S = self._L22 = np.empty((q2, q2), order="F")
        self._L11 = np.empty((self._n1, self._k1, self._k1))
        self._L21 = np.empty_like(self._route.elimination_values)

    def fresh(self, max_threads: int | None = None, *, factored: bool = False) -> BlockedFactor:
        """A factor that shares this one's structure (patterns, the stored Z'Z, the routes'
        data) and has numbers of its own, made by its first :meth:`update` or, where
        ``factored``, copied from this one's last (an update at that θ then has nothing to
        do); its sparse passes and BLAS use at most ``max_threads`` threads where that is
        given."""
        twin = copy.copy(self)
        if max_threads is not None:
            twin.threads = min(self.threads, max_threads)
            twin.blas_threads = min(self.blas_threads or max_threads, max_threads)
            twin._inverse_blas_threads = inverse_blas_threads(self.dense_size, twin.blas_threads, max_threads)
        twin._pool = None
        factored = factored and self._theta is not None
        twin._route = self._route.fresh(factored)
        twin._theta = self._theta if factored else None  # else its first update allocates
        # the dense work array and the factor are one array after an update
        twin._S = twin._L22 = np.array(self._L22, order="F", copy=True) if factored else np.empty((0, 0), order="F")
        twin._L11 = self._L11.copy() if factored else np.empty((0, self._k1, self._k1))
        twin._L21 = self._L21.copy() if factored else np.empty(0)
        return twin

    def refill(self, cross_products: CrossProducts) -> None:
        """Take Z'Z from ``cross_products``: the same terms, levels and co-occurring pairs as
        this factor's, other weights (a generalized model's PIRLS iteration). Only the values
        are taken again; every pattern stays. Call it on a factor of one's own (a
        :meth:`fresh` copy): its next :meth:`update` factors the new values."""
        if self._route.name == "grouped":
            raise NotImplementedError("the grouped route needs fixed weights; make the factor with varying_weights")
        values = cross_products.block_values
        self._cp = cross_products
        self._first_values = values[self._first_gather]
        entries = replace(self._entries, values=values[self._cross_gather])
        self._route = make_route(self._route.name, entries, self._first_values)
        self._dense_slots = (*self._dense_slots[:5], values[self._dense_gather])
        self._theta = None

    def describe(self) -> FactorPlan:
        """The plan this factor runs: the coupling route, the dense block's order, whether
        terms were merged, the threads and the memory estimate."""
        return FactorPlan(
            path="blocked",
            route=self._route.name if self.dense_size else None,
            merged_terms=self._merged_terms,
            dense_size=self.dense_size,
            threads=self.threads,
            blas_threads=self.blas_threads,
            estimated_bytes=self._estimated_bytes,
            estimated_seconds=self._estimated_seconds,
        )

    def __getstate__(self) -> dict[str, Any]:
        # the thread pool is the process's own; another process starts its own on first use
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    def _executor(self) -> ThreadPoolExecutor | None:
        """The factor's own threads for the sparse passes (None: one thread), started on first
        use and kept for the fit, sized by :attr:`threads` as it is now."""
        if self.threads <= 1:
            return None
        if self._pool is None or self._pool[0] != self.threads:
            self._pool = (self.threads, ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="lmmfast"))
        return self._pool[1]

    def update(self, theta: np.ndarray) -> None:
        if self._theta is not None and np.array_equal(theta, self._theta):
            return  # already factored here (the result's solve at the optimiser's last point)
        self._theta = None
        if self._L11.shape[0] != self._n1:
            self._allocate()
        templates = self._layout.packed_templates(theta)
        offsets = self._template_offsets
        sizes = self._cp.term_sizes
        route = self._route
        band = np.zeros((1, 0))
        if self.dense_size:
            scale_blocks(*self._dense_slots, sizes, templates, offsets, self._S)
            if route.needs_band:
                # Λ₂ by bands, for the routes that multiply by it
                positions = self._band_positions
                band = np.where(positions >= 0, templates[np.maximum(positions, 0)], 0.0)
                # a band that is zero throughout (uncorrelated pieces of a merged term) costs nothing
                while len(band) > 1 and not np.any(band[-1]):
                    band = band[:-1]
            route.before_elimination(templates, offsets, band, self._S)
        entries = route.entries
        failed = _eliminate_first_term(
            self._k1,
            self._first_values,
            route.elimination_ptr,
            entries.term,
            entries.offsets,
            route.elimination_values,
            sizes,
            templates,
            offsets,
            self._diagonal_terms,
            self._L11,
            self._L21,
        )
        if failed >= 0:
            raise np.linalg.LinAlgError(
                f"the first term's block of level {failed} is not numerically positive definite at this θ"
            )
        if self.dense_size:
            first_template = templates[offsets[0] : offsets[0] + self._k1 * self._k1].reshape(self._k1, self._k1)
            route.after_elimination(self._L11, self._L21, first_template, band, self._S, self.threads, self._executor)
            factor, info = lapack.dpotrf(self._S, lower=1, clean=0, overwrite_a=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"dpotrf failed (info={info}) on a matrix that must be positive definite")
            self._L22 = factor
        self._theta = np.array(theta, dtype=np.float64, copy=True)

    #: :meth:`logdet_gradient_sums` and :meth:`zz_times` give the objective its gradient.
    supports_gradient: bool = True
    gradient_cost: float = 3.0  # the dense block's inverse and two rank updates: 2–3 evaluations

    def logdet_gradient_sums(self, theta: np.ndarray) -> list[np.ndarray]:
        """For each term t, G_t = Σ over its levels of the k×k diagonal blocks of M⁻¹Λ'Z'Z,
        at the θ of the last :meth:`update` (which must be ``theta``): ∂ log|M| / ∂θᵢ is
        2 G_t[c, r] for θᵢ at T_t[r, c] (:mod:`lmmfast.factor.inverse_blocks`). Costs about
        one ``potri`` of the dense block and two rank updates."""
        cp = self._cp
        templates = self._layout.packed_templates(theta)
        offsets, sizes = self._template_offsets, cp.term_sizes
        inverse, first_inverse, state = self._selected_inverse()
        out = np.zeros_like(templates)
        logdet_trace_sums(
            self._k1, self._first_values, first_inverse, *self._dense_slots, inverse, sizes, templates, offsets, out
        )
        if self.dense_size:
            term_starts = cp.column_offsets - self._q1
            self._route.add_traces(state, inverse, templates, offsets, self._col_term, term_starts, cp.term_levels, out)
        return [out[o : o + k * k].reshape(k, k) for o, k in zip(offsets, sizes)]

    def _selected_inverse(self) -> tuple[np.ndarray, np.ndarray, Any]:
        """M⁻¹'s dense block (both triangles where the route reads both: the per-count sums,
        the dense coupling's BLAS products; else the lower one), the first term's diagonal
        blocks, and the route's state for the couplings."""
        with limit_blas_threads(self._inverse_blas_threads):
            inverse = dense_block_inverse(self._L22 if self.dense_size else None, self._route.reads_full_inverse)
        first_inverse, state = self._route.first_inverse(self._L11, self._L21, inverse, self.threads, self._executor)
        return inverse, first_inverse, state

    def inverse_diagonal_blocks(self) -> list[np.ndarray] | None:
        """Per term, the (levels, k, k) diagonal blocks of M⁻¹ at the last :meth:`update`, from
        the gradient's selected inverse (one ``potri`` and one rank update, not q solves); None
        on the grouped route, whose first-term blocks are summed per group, not per level."""
        if self._route.name == "grouped":
            return None
        inverse, first_inverse, _ = self._selected_inverse()
        cp = self._cp
        later = dense_diagonal_blocks(inverse, cp.term_sizes[1:], cp.term_levels[1:], cp.column_offsets[1:] - self._q1)
        return [first_inverse.reshape(self._n1, self._k1, self._k1), *later]

    def inverse_on_pattern(self) -> np.ndarray | None:
        """M⁻¹ at every stored block of Z'Z, laid out as the cross-products' ``block_values``,
        at the last :meth:`update`: the first term's diagonal blocks, −Y at the couplings and
        the dense block's inverse within it; None on the grouped route."""
        if self._route.name == "grouped":
            return None
        inverse, first_inverse, state = self._selected_inverse()
        out = np.empty_like(self._cp.block_values)
        out[self._first_gather] = first_inverse.ravel()
        if self.dense_size:
            coupled = self._route.coupled_entries(state)
            assert coupled is not None
            out[self._cross_gather] = -coupled
            if self._dense_positions is None:
                self._dense_positions = dense_value_positions(*self._dense_slots[:4], self._cp.term_sizes)
            out[self._dense_gather] = inverse[self._dense_positions]
        return out

    def zz_times(self, V: np.ndarray) -> np.ndarray:
        """Z'Z V for ``V`` with one row per random effect (the model's order), from the
        factor's own copy of Z'Z's blocks (:mod:`lmmfast.factor.zz_product`)."""
        V = np.asarray(V, dtype=np.float64).reshape(self._q1 + self.dense_size, -1)
        first, rest, _ = split_rows(V, self._n1, self._k1, "C")
        k1 = self._k1
        out1 = np.matmul(self._first_values.reshape(self._n1, k1, k1), first)
        out2 = np.zeros_like(rest)
        dense_block_times(*self._dense_slots, self._cp.term_sizes, rest, out2)
        self._route.times(first, rest, out1, out2)
        return join_rows(out1, out2, False)

    def logdet(self) -> float:
        first = 2.0 * float(np.sum(np.log(np.diagonal(self._L11, axis1=1, axis2=2))))
        if not self.dense_size:
            return first
        return first + 2.0 * float(np.sum(np.log(np.diag(self._L22))))

    def solve_L(self, rhs: np.ndarray) -> np.ndarray:
        # C order for the kernels, which read or write an entry's row across all columns
        first, rest, vector = split_rows(rhs, self._n1, self._k1, "C")
        self._route.forward(self._L11, self._L21, first, rest)
        if self.dense_size:
            rest, _ = lapack.dtrtrs(self._L22, rest, lower=1, trans=0)  # L22 is a factor: info is 0
        return join_rows(first, rest, vector)

    def solve_Lt(self, rhs: np.ndarray) -> np.ndarray:
        # Fortran order for LAPACK first, C order for the kernels after it
        first, rest, vector = split_rows(rhs, self._n1, self._k1, "F")
        if self.dense_size:
            rest, _ = lapack.dtrtrs(self._L22, rest, lower=1, trans=1)
        rest = np.ascontiguousarray(rest)
        self._route.backward(self._L11, self._L21, rest, first)
        return join_rows(first, rest, vector)
