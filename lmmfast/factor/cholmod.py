"""The general path: CHOLMOD's sparse Cholesky, symbolic analysis done once.

CHOLMOD chooses between its supernodal factorisation (dense BLAS kernels on groups of
columns: the right one where the factor has dense parts, as InstEval's) and its simplicial
one (column by column: the right one where every column of the factor is short, as in
nested designs with a few crossings) from the symbolic analysis's flops per non-zero; its
choice is kept. Supernodal on a factor of short columns is many times slower than simplicial
(each supernode is a few columns, and every BLAS call is overhead).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from sksparse.cholmod import analyze

from lmmfast.crossprod import CrossProducts
from lmmfast.factor.base import MAX_GRADIENT_COST
from lmmfast.factor.pattern import build_lower_pattern, fill_scaled, full_matrix
from lmmfast.factor.plan import FactorPlan
from lmmfast.factor.rank_update import available_cores
from lmmfast.factor.selected_inverse import (
    dense_tail_of_counts,
    pattern_checksum,
    pattern_positions,
    read_block,
    selected_inverse,
    trace_sums,
)
from lmmfast.factor.symbolic import factor_column_counts, factorization_work, supernodal_storage
from lmmfast.parameters import ThetaLayout

#: CHOLMOD factors supernodally where its analysis counts at least this many flops per
#: non-zero of L (its ``supernodal_switch``), column by column below.
SUPERNODAL_SWITCH = 40.0

#: One factorisation takes about this many seconds per multiply-add, plus this per column
#: (supernodal: BLAS calls per supernode) or per non-zero (simplicial). Rough: 20 s measured
#: where this says 34 s (200,000 × 20,000 crossed intercepts), 40 against 25 ms (InstEval),
#: 1.0 against 1.4 ms (a 13,000-column simplicial factor).
SUPERNODAL_SECONDS = (2e-11, 5e-6)
SIMPLICIAL_SECONDS = (1e-9, 2e-8)

#: The selected inverse's seconds per multiply-add of the factorisation's work: in scalar
#: numba for the columns before the factor's dense last block, by LAPACK (as the
#: factorisation's BLAS) for that block (:func:`lmmfast.factor.selected_inverse.selected_inverse`).
SELECTED_INVERSE_SECONDS_PER_MADD = 2.5e-9
DENSE_INVERSE_SECONDS_PER_MADD = SUPERNODAL_SECONDS[0]


class CholmodFactor:
    """Sparse Cholesky of Λ'Z'ZΛ + I through scikit-sparse.

    The matrix handed to CHOLMOD is the lower triangle (scikit-sparse 0.4 reads only that
    triangle); its pattern is fixed, so each :meth:`update` only rewrites the values and calls
    ``cholesky_inplace``, which reuses the one symbolic analysis. ``memory_budget`` decides
    whether the gradients' working copies fit; ``design_bytes``, what the model's design
    already holds, is counted in :attr:`estimated_bytes` and against the budget.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmfast.crossprod import form_cross_products
    >>> from lmmfast.design.random import RandomTerm
    >>> t = RandomTerm("g", ("(Intercept)",), np.array(["a", "b"]), np.array([0, 0, 1]), np.ones((3, 1)))
    >>> f = CholmodFactor(form_cross_products([t], np.ones((3, 1)), np.ones(3)), ThetaLayout.from_sizes([1]))
    >>> f.update(np.array([1.0]))
    >>> bool(abs(f.logdet() - np.log(6.0)) < 1e-12)
    True
    """

    def __init__(
        self,
        cross_products: CrossProducts,
        layout: ThetaLayout,
        merged_terms: bool = False,
        memory_budget: float | None = None,
        design_bytes: int = 0,
    ) -> None:
        self._merged_terms = merged_terms
        self._design_bytes = design_bytes
        self._cp = cross_products
        self._layout = layout
        self._template_offsets = layout.template_offsets
        self._pattern = build_lower_pattern(cross_products)
        q = cross_products.q
        data = np.zeros(self._pattern.nnz)
        data[self._pattern.diagonal] = 1.0
        self._matrix = sp.csc_matrix((data, self._pattern.indices, self._pattern.indptr), shape=(q, q))
        self._factor = analyze(self._matrix, mode="auto")
        #: the θ the numeric factor was last formed for (None: none yet, or Z'Z refilled)
        self._theta: np.ndarray | None = None
        self._zz: sp.csr_matrix | None = None
        #: L's pattern (indptr, indices) and where Z'Z's blocks sit on it, once a gradient has
        #: read them (:meth:`_inverse_at_slots`)
        self._slot_positions: tuple[np.ndarray, int, np.ndarray] | None = None
        counts = factor_column_counts(self._pattern.indptr, self._pattern.indices, self._factor.P())
        #: nnz(L), exactly, and the multiply-adds of one factorisation
        self.factor_nonzeros = int(np.sum(counts))
        self.factor_work = factorization_work(counts)
        self._supernodal_storage = supernodal_storage(counts)
        self._estimated_seconds = self._seconds()
        #: the factor's dense last block, which the selected inverse hands to LAPACK
        self.dense_tail = dense_tail_of_counts(counts)
        tail_work = factorization_work(counts[len(counts) - self.dense_tail :]) if self.dense_tail else 0.0
        # Takahashi's recurrence does about the factorisation's work: in scalar loops where a
        # supernodal factorisation runs BLAS, but for the dense last block, in LAPACK as it
        self.gradient_cost = 1.0 + (
            (
                SELECTED_INVERSE_SECONDS_PER_MADD * (self.factor_work - tail_work)
                + DENSE_INVERSE_SECONDS_PER_MADD * tail_work
            )
            / self._estimated_seconds
            if self.supernodal and self._estimated_seconds > 0.0
            else 2.0
        )
        self._estimated_bytes = self._memory(cross_products, self.gradient_cost <= MAX_GRADIENT_COST)
        if memory_budget is not None and self._estimated_bytes > memory_budget:
            # the gradient's working copies would not fit the budget, the factor alone might:
            # the fit then takes no gradients (BOBYQA), as where they cost too many evaluations
            self.gradient_cost = math.inf
            self._estimated_bytes = self._memory(cross_products, False)

    @property
    def supernodal(self) -> bool:
        """Whether CHOLMOD factors this matrix supernodally (its own rule, from the analysis)."""
        return self.factor_work >= SUPERNODAL_SWITCH * self.factor_nonzeros

    def _memory(self, cp: CrossProducts, gradients: bool) -> int:
        """Bytes the fit holds beyond the data: the design's arrays (``design_bytes``), the
        matrix handed to CHOLMOD (values, indices, positions of the stored blocks), the dense
        right-hand sides of the solves, the factor (supernodal: its supernodes' rectangles
        and the largest update block, CHOLMOD's workspace, which measurements find held
        after the factorisation too; simplicial: values and row indices), and where the fit
        takes ``gradients`` the larger of two phases beside it: reading L (scikit-sparse's
        copy of the factor, turned simplicial and handed over as SciPy's), then inverting (L
        as that matrix, M⁻¹ on its pattern, the dense last block as a square for LAPACK and
        the block's inverse gathered at the rows a run of columns shares, at most as large)."""
        simplicial = 12.0 * self.factor_nonzeros
        if self.supernodal:
            stored, update = self._supernodal_storage
            copy, factor = 8.0 * stored, 8.0 * (stored + update)
        else:
            copy = factor = simplicial
        gradient = 0.0
        if gradients:
            reading = max(copy + simplicial, 2.0 * simplicial)
            inverting = simplicial + 8.0 * self.factor_nonzeros + 16.0 * self.dense_tail**2
            gradient = max(reading, inverting)
        matrix = 12.0 * self._pattern.nnz + 8.0 * len(cp.block_values)
        solves = 8.0 * 3 * cp.q * (cp.p + 1)
        return int(self._design_bytes + matrix + solves + factor + gradient)

    def _seconds(self) -> float:
        per_madd, per_piece = SUPERNODAL_SECONDS if self.supernodal else SIMPLICIAL_SECONDS
        pieces = self._cp.q if self.supernodal else self.factor_nonzeros
        return per_madd * self.factor_work + per_piece * pieces

    @property
    def estimated_bytes(self) -> int:
        """The path's memory, from the exact size of its factor."""
        return self._estimated_bytes

    #: The analytic gradient, from the selected inverse (:mod:`lmmfast.factor.selected_inverse`).
    supports_gradient: bool = True
    dense_size: int = 0
    blas_threads: int | None = None

    @property
    def threads(self) -> int:
        """Threads for the selected inverse's terms in the dense block: the cores this
        process may run on, at most :attr:`blas_threads` where that is set (CHOLMOD's own
        threads are BLAS's)."""
        cores = available_cores()
        return cores if self.blas_threads is None else max(1, min(cores, self.blas_threads))

    def fresh(self, max_threads: int | None = None, *, factored: bool = False) -> CholmodFactor:
        """A copy with its own values and numeric factor; the pattern and the symbolic
        analysis are CHOLMOD's copy of this one's (no new analysis). CHOLMOD's threads are
        BLAS's, so ``max_threads`` caps those. CHOLMOD copies the numeric factor either way,
        so the copy is always factored where this one is (``factored`` changes nothing)."""
        # not copy.copy: it would go through __setstate__, which analyses the pattern again
        twin = object.__new__(CholmodFactor)
        twin.__dict__.update(self.__dict__)
        if max_threads is not None:
            twin.blas_threads = max_threads
        twin._matrix = self._matrix.copy()
        twin._factor = self._factor.copy()
        return twin

    def refill(self, cross_products: CrossProducts) -> None:
        """Take Z'Z from ``cross_products`` (same pattern, other weights); the next
        :meth:`update` factors it. Call it on a factor of one's own (a :meth:`fresh` copy)."""
        self._cp = cross_products
        self._zz = None  # Z'Z of the old weights
        self._theta = None

    def describe(self) -> FactorPlan:
        return FactorPlan(
            path="cholmod",
            route=None,
            merged_terms=self._merged_terms,
            dense_size=0,
            threads=self.threads,
            blas_threads=None,
            estimated_bytes=self._estimated_bytes,
            estimated_seconds=self._estimated_seconds,
        )

    def __getstate__(self) -> dict[str, Any]:
        # CHOLMOD's factor lives in C; the symbolic analysis is done again on unpickling,
        # and, as after any fresh start, the next update factors the numbers
        state = self.__dict__.copy()
        del state["_factor"]
        state["_theta"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._factor = analyze(self._matrix, mode="auto")

    def _selected_inverse(self) -> tuple[Any, np.ndarray, np.ndarray]:
        """L (simplicial, CSC) at the last update, M⁻¹ on its pattern, and the inverse
        permutation. scikit-sparse reads L from a copy of the factor that it turns
        simplicial, so the factor keeps its own mode for the later updates."""
        L = self._factor.L().tocsc()
        L.sort_indices()
        inverse_permutation = np.empty(self._cp.q, dtype=np.int64)
        inverse_permutation[self._factor.P()] = np.arange(self._cp.q, dtype=np.int64)
        return L, selected_inverse(L.indptr, L.indices, L.data, self.threads), inverse_permutation

    def _inverse_at_slots(self) -> np.ndarray:
        """M⁻¹ at every stored block of Z'Z, laid out as the cross-products' block values,
        gathered from the selected inverse at positions found once for L's pattern (which
        the symbolic analysis fixes) and found again should the pattern differ."""
        cp = self._cp
        L, inverse, inverse_permutation = self._selected_inverse()
        known = self._slot_positions
        # L's pattern is recognised by its column pointers and a checksum of its rows: holding
        # its row indices from one gradient to the next would hold 8 bytes per non-zero
        checksum = pattern_checksum(L.indices)
        if known is None or not (np.array_equal(known[0], L.indptr) and known[1] == checksum):
            positions = np.empty(len(cp.block_values), dtype=np.int64)
            pattern_positions(
                L.indptr, L.indices, inverse_permutation, cp.slot_term_a, cp.slot_term_b, cp.slot_level_a,
                cp.slot_level_b, cp.slot_offsets, cp.term_sizes, cp.column_offsets, positions,
            )  # fmt: skip
            known = self._slot_positions = (L.indptr.copy(), checksum, positions)
        return inverse[known[2]]

    def logdet_gradient_sums(self, theta: np.ndarray) -> list[np.ndarray]:
        """For each term t, G_t = Σ over its levels of the k×k diagonal blocks of M⁻¹Λ'Z'Z,
        at the θ of the last :meth:`update` (which must be ``theta``), from M⁻¹ on the
        factor's pattern: about the work of one more factorisation."""
        cp = self._cp
        templates = self._layout.packed_templates(theta)
        out = np.zeros_like(templates)
        trace_sums(
            self._inverse_at_slots(), cp.slot_term_a, cp.slot_term_b, cp.slot_level_a, cp.slot_level_b,
            cp.block_values, cp.term_sizes, cp.slot_offsets, templates, self._template_offsets, out,
        )  # fmt: skip
        return [out[o : o + k * k].reshape(k, k) for o, k in zip(self._template_offsets, cp.term_sizes)]

    def inverse_diagonal_blocks(self) -> list[np.ndarray] | None:
        """Per term, the (levels, k, k) diagonal blocks of M⁻¹ at the last update."""
        cp = self._cp
        L, inverse, inverse_permutation = self._selected_inverse()
        blocks = []
        for k, levels, offset in zip(cp.term_sizes, cp.term_levels, cp.column_offsets):
            k, levels = int(k), int(levels)
            term = np.empty((levels, k, k))
            for level in range(levels):
                start = int(offset) + level * k
                read_block(L.indptr, L.indices, inverse, inverse_permutation, start, start, k, k, term[level])
            blocks.append(term)
        return blocks

    def inverse_on_pattern(self) -> np.ndarray | None:
        """M⁻¹ at every stored block of Z'Z, laid out as the cross-products' ``block_values``,
        at the last update (from the selected inverse on L's pattern, which holds Z'Z's)."""
        return self._inverse_at_slots()

    def zz_times(self, V: np.ndarray) -> np.ndarray:
        """Z'Z V (the stored blocks as one sparse matrix, formed on first use)."""
        if self._zz is None:
            self._zz = full_matrix(self._cp)
        return np.asarray(self._zz @ V)

    def update(self, theta: np.ndarray) -> None:
        if self._theta is not None and np.array_equal(theta, self._theta):
            return  # already factored here (the result's solve at the optimiser's last point)
        self._theta = None
        cp = self._cp
        fill_scaled(
            cp.block_values,
            cp.slot_term_a,
            cp.slot_term_b,
            cp.slot_offsets,
            cp.term_sizes,
            self._layout.packed_templates(theta),
            self._template_offsets,
            self._pattern.position,
            self._pattern.diagonal,
            self._matrix.data,
        )
        self._factor.cholesky_inplace(self._matrix)
        self._theta = np.array(theta, dtype=np.float64, copy=True)

    def logdet(self) -> float:
        return float(self._factor.logdet())

    def solve_L(self, rhs: np.ndarray) -> np.ndarray:
        return self._factor.solve_L(self._factor.apply_P(rhs), use_LDLt_decomposition=False)

    def solve_Lt(self, rhs: np.ndarray) -> np.ndarray:
        return self._factor.apply_Pt(self._factor.solve_Lt(rhs, use_LDLt_decomposition=False))
