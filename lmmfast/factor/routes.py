"""The blocked path's routes for the first term's coupling L21 to the dense block.

Every route gives the same numbers; they differ in how L21 is held and how the products
with it are formed:

- :class:`SparseRoute`: L21 entry by entry (one k₁-vector per first-term level and row of
  the dense block), the update L21 L21' and the gradient's coupled rows by the scattered
  kernels of :mod:`lmmfast.factor.rank_update` and :mod:`lmmfast.factor.inverse_blocks`;
- :class:`GroupedRoute`: L21 entry by entry for the solves, but the update and the gradient's
  couplings summed once per distinct first-term level count (random intercepts only,
  :mod:`lmmfast.factor.grouped_coupling`);
- :class:`DenseRoute`: L21 as a dense matrix, every product by BLAS
  (:mod:`lmmfast.factor.dense_coupling`).

:class:`~lmmfast.factor.blocked.BlockedFactor` calls one route through :class:`CouplingRoute`
and never branches on which it holds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol, Self

import numpy as np

from lmmfast.factor.dense_coupling import DENSE_SECONDS_PER_MADD, SPARSE_SECONDS_PER_MADD, DenseCoupling
from lmmfast.factor.first_term_solves import (
    backward_first,
    backward_first_scalar,
    forward_first,
    forward_first_scalar,
    lower_level_solves,
    upper_level_solves,
)
from lmmfast.factor.grouped_coupling import GroupedCoupling
from lmmfast.factor.inverse_blocks import (
    coupled_rows,
    coupling_trace_sums,
    first_term_inverse_blocks,
    first_term_inverse_rows,
)
from lmmfast.factor.rank_update import UpdatePattern, subtract_outer_products
from lmmfast.factor.zz_product import coupling_times

#: The factor's thread pool for the sparse passes, started on the first call (None: one thread).
Executor = Callable[[], ThreadPoolExecutor | None]


@dataclass(frozen=True)
class CouplingEntries:
    """Z₂'Z₁ laid out entry by entry for the elimination, as every route receives it.

    Attributes
    ----------
    k1, n1 : int
        Columns per first-term level, and its levels.
    ptr : numpy.ndarray
        The coupling blocks of first-term level l are ``ptr[l]:ptr[l + 1]``.
    row, term, offsets : numpy.ndarray
        Per block: its first row of the dense block, its later term, and where its values
        (and L21's) start.
    values : numpy.ndarray
        Z₂'Z₁ at the blocks, k₁ values per row.
    sizes : numpy.ndarray
        k per term.
    entry_ptr, entry_level : numpy.ndarray
        The entries (one per first-term level and row) of each level, and each entry's level.
    pattern : UpdatePattern
        Where the entries go in the dense block.
    term_entries : list
        Per later term, the positions of its blocks' values (None where it owns them all).
    all_scalar : bool
        Every term has one column.
    """

    k1: int
    n1: int
    ptr: np.ndarray
    row: np.ndarray
    term: np.ndarray
    offsets: np.ndarray
    values: np.ndarray
    sizes: np.ndarray
    entry_ptr: np.ndarray
    entry_level: np.ndarray
    pattern: UpdatePattern
    term_entries: list[tuple[int, np.ndarray | None]]
    all_scalar: bool


class CouplingRoute(Protocol):
    """How one route forms, applies and differentiates the coupling."""

    #: ``"dense"``, ``"grouped"`` or ``"sparse"``
    name: str
    #: The coupling's structure (a dense route keeps no values here: they are its matrix's).
    entries: CouplingEntries
    #: Whether the update needs Λ₂'s bands (:func:`lmmfast.factor.blocked_layout.band_positions`).
    needs_band: bool
    #: Whether the gradient reads both triangles of the dense block's inverse.
    reads_full_inverse: bool
    #: Per first-term level, the coupling blocks the elimination kernel forms into L21.
    elimination_ptr: np.ndarray
    #: The values the elimination kernel reads (empty where it forms no L21 entries).
    elimination_values: np.ndarray

    def before_elimination(self, templates: np.ndarray, offsets: np.ndarray, band: np.ndarray, S: np.ndarray) -> None:
        """Anything subtracted from the dense block before the first term is eliminated."""

    def after_elimination(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        first_template: np.ndarray,
        band: np.ndarray,
        S: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> None:
        """S −= L21 L21' (and whatever the route holds of L21 besides the kernel's)."""

    def forward(self, L11: np.ndarray, L21: np.ndarray, first: np.ndarray, rest: np.ndarray) -> None:
        """first = L11⁻¹ first, then rest −= L21 first, in place."""

    def backward(self, L11: np.ndarray, L21: np.ndarray, rest: np.ndarray, first: np.ndarray) -> None:
        """first −= L21' rest, then first = L11'⁻¹ first, in place."""

    def times(self, first: np.ndarray, rest: np.ndarray, out1: np.ndarray, out2: np.ndarray) -> None:
        """out2 += Z₂'Z₁ first and out1 += Z₁'Z₂ rest, in place."""

    def first_inverse(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        inverse: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> tuple[np.ndarray, Any]:
        """The first term's diagonal blocks of M⁻¹, and what :meth:`add_traces` needs."""

    def add_traces(
        self,
        state: Any,
        inverse: np.ndarray,
        templates: np.ndarray,
        offsets: np.ndarray,
        column_term: np.ndarray,
        term_starts: np.ndarray,
        term_levels: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """``out`` += the couplings' share of each term's trace sum for the gradient."""

    def coupled_entries(self, state: Any) -> np.ndarray | None:
        """Y = X W at the coupling's entries, laid out as its values (−Y is M⁻¹ there), from
        :meth:`first_inverse`'s state; None where the route sums the couplings per group."""

    def fresh(self, factored: bool = False) -> CouplingRoute:
        """A route with the same data and workspaces of its own (holding this one's numbers of
        the last update where ``factored``)."""

    def update_seconds(self, q1: int, q2: int, threads: int) -> float:
        """The update's estimated cost per evaluation (for the plan)."""


class _EntrywiseRoute:
    """What the sparse and grouped routes share: L21 entry by entry, formed by the
    elimination kernel, and solves and products that stream through its entries."""

    needs_band = False
    reads_full_inverse = False

    def __init__(self, entries: CouplingEntries) -> None:
        self.entries = entries
        self.elimination_ptr = entries.ptr
        self.elimination_values = entries.values

    def before_elimination(self, templates: np.ndarray, offsets: np.ndarray, band: np.ndarray, S: np.ndarray) -> None:
        return None

    def forward(self, L11: np.ndarray, L21: np.ndarray, first: np.ndarray, rest: np.ndarray) -> None:
        e = self.entries
        if e.all_scalar:
            forward_first_scalar(L11, e.ptr, e.row, L21, first, rest)
        else:
            forward_first(L11, e.ptr, e.row, e.term, e.offsets, e.sizes, L21, first, rest)

    def backward(self, L11: np.ndarray, L21: np.ndarray, rest: np.ndarray, first: np.ndarray) -> None:
        e = self.entries
        if e.all_scalar:
            backward_first_scalar(L11, e.ptr, e.row, L21, rest, first)
        else:
            backward_first(L11, e.ptr, e.row, e.term, e.offsets, e.sizes, L21, rest, first)

    def times(self, first: np.ndarray, rest: np.ndarray, out1: np.ndarray, out2: np.ndarray) -> None:
        e = self.entries
        coupling_times(e.ptr, e.row, e.term, e.offsets, e.sizes, e.values, first, rest, out1, out2)

    def fresh(self, factored: bool = False) -> Self:
        return self  # holds no workspace: L21 is the factor's


class SparseRoute(_EntrywiseRoute):
    """The scattered sparse kernels: the general route."""

    name = "sparse"

    def update_seconds(self, q1: int, q2: int, threads: int) -> float:
        return SPARSE_SECONDS_PER_MADD * self.entries.pattern.work / max(1, threads)

    def after_elimination(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        first_template: np.ndarray,
        band: np.ndarray,
        S: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> None:
        subtract_outer_products(self.entries.pattern, L21, S, threads, executor())

    def first_inverse(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        inverse: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> tuple[np.ndarray, Any]:
        e = self.entries
        if not len(e.pattern.column_ptr) - 1:  # no dense block
            w = coupled = np.zeros(0)
        else:
            w = first_term_inverse_rows(L11, e.entry_level, L21)
            coupled = coupled_rows(e.pattern, w, inverse, threads, executor())
        return first_term_inverse_blocks(L11, e.entry_ptr, w, coupled), coupled

    def add_traces(
        self,
        state: Any,
        inverse: np.ndarray,
        templates: np.ndarray,
        offsets: np.ndarray,
        column_term: np.ndarray,
        term_starts: np.ndarray,
        term_levels: np.ndarray,
        out: np.ndarray,
    ) -> None:
        e = self.entries
        if len(e.pattern.column_ptr) - 1:
            coupling_trace_sums(e.k1, e.term_entries, e.values, state, e.sizes, templates, offsets, out)

    def coupled_entries(self, state: Any) -> np.ndarray | None:
        return state  # Y entry by entry already


class GroupedRoute(_EntrywiseRoute):
    """Per-count sums for balanced designs with random intercepts only."""

    name = "grouped"
    needs_band = True
    reads_full_inverse = True

    def __init__(self, entries: CouplingEntries, first_values: np.ndarray) -> None:
        super().__init__(entries)
        self.grouped = GroupedCoupling(entries.pattern, entries.values, entries.entry_level, first_values)

    def update_seconds(self, q1: int, q2: int, threads: int) -> float:
        return DENSE_SECONDS_PER_MADD * q2 * q2 * len(self.grouped.counts)

    def before_elimination(self, templates: np.ndarray, offsets: np.ndarray, band: np.ndarray, S: np.ndarray) -> None:
        # every term scalar: Λ₂ is the band's first row
        self.grouped.subtract_scaled(float(templates[offsets[0]]), band[0], S)

    def after_elimination(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        first_template: np.ndarray,
        band: np.ndarray,
        S: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> None:
        return None  # the update was subtracted before, per group

    def first_inverse(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        inverse: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> tuple[np.ndarray, Any]:
        w = coupled = np.zeros_like(L21)  # the couplings are added per group, in add_traces
        return first_term_inverse_blocks(L11, self.entries.entry_ptr, w, coupled), None

    def add_traces(
        self,
        state: Any,
        inverse: np.ndarray,
        templates: np.ndarray,
        offsets: np.ndarray,
        column_term: np.ndarray,
        term_starts: np.ndarray,
        term_levels: np.ndarray,
        out: np.ndarray,
    ) -> None:
        first, later = self.grouped.trace_sums(
            inverse, float(templates[offsets[0]]), templates[offsets[column_term]], column_term, len(offsets)
        )
        out[offsets[0]] += first
        out[offsets[1:]] += later[1:]

    def coupled_entries(self, state: Any) -> np.ndarray | None:
        return None


class DenseRoute:
    """L21 as a dense matrix and BLAS for every product with it: fully crossed designs."""

    name = "dense"
    needs_band = True
    reads_full_inverse = True

    def __init__(self, entries: CouplingEntries) -> None:
        self.coupling = DenseCoupling(entries.pattern, entries.entry_level, entries.n1, entries.values)
        self.entries = replace(entries, values=np.empty(0))  # held as the dense matrix, read nowhere else
        # the elimination kernel forms L11 only: L21 is the dense coupling's
        self.elimination_ptr = np.zeros(entries.n1 + 1, dtype=np.int64)
        self.elimination_values = np.empty(0)

    def update_seconds(self, q1: int, q2: int, threads: int) -> float:
        return DENSE_SECONDS_PER_MADD * 0.5 * q2 * q2 * q1

    def before_elimination(self, templates: np.ndarray, offsets: np.ndarray, band: np.ndarray, S: np.ndarray) -> None:
        return None

    def after_elimination(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        first_template: np.ndarray,
        band: np.ndarray,
        S: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> None:
        self.coupling.eliminate(L11, first_template, band)
        self.coupling.subtract_outer_products(S)

    def forward(self, L11: np.ndarray, L21: np.ndarray, first: np.ndarray, rest: np.ndarray) -> None:
        lower_level_solves(L11, first)
        self.coupling.forward(first, rest)

    def backward(self, L11: np.ndarray, L21: np.ndarray, rest: np.ndarray, first: np.ndarray) -> None:
        self.coupling.backward(rest, first)
        upper_level_solves(L11, first)

    def times(self, first: np.ndarray, rest: np.ndarray, out1: np.ndarray, out2: np.ndarray) -> None:
        self.coupling.times(first, rest, out1, out2)

    def first_inverse(
        self,
        L11: np.ndarray,
        L21: np.ndarray,
        inverse: np.ndarray,
        threads: int,
        executor: Executor,
    ) -> tuple[np.ndarray, Any]:
        # W and Y as dense matrices; the entry-wise L21 is empty, so the kernel adds nothing
        w_dense = self.coupling.inverse_rows(L11)
        y_dense = self.coupling.coupled(w_dense, inverse)
        first = first_term_inverse_blocks(L11, self.elimination_ptr, L21, L21)
        first += self.coupling.level_products(w_dense, y_dense)
        return first, y_dense

    def add_traces(
        self,
        state: Any,
        inverse: np.ndarray,
        templates: np.ndarray,
        offsets: np.ndarray,
        column_term: np.ndarray,
        term_starts: np.ndarray,
        term_levels: np.ndarray,
        out: np.ndarray,
    ) -> None:
        k1 = self.entries.k1
        out[offsets[0] : offsets[0] + k1 * k1] += self.coupling.first_term_traces(state).ravel()
        for t, _ in self.entries.term_entries:
            k = int(self.entries.sizes[t])
            traces = self.coupling.later_term_traces(state, int(term_starts[t]), int(term_levels[t]), k)
            out[offsets[t] : offsets[t] + k * k] += traces.ravel()

    def coupled_entries(self, state: Any) -> np.ndarray | None:
        return state.reshape(-1)[self.coupling.entry_index]

    def fresh(self, factored: bool = False) -> DenseRoute:
        twin = copy.copy(self)
        twin.coupling = self.coupling.fresh(factored)
        return twin


def make_route(name: str, entries: CouplingEntries, first_values: np.ndarray) -> CouplingRoute:
    """The route called ``name`` (one of :data:`lmmfast.factor.plan.ROUTES`) over ``entries``.

    Examples
    --------
    >>> pattern = UpdatePattern.build(1, np.array([0, 1]), np.array([0]), 1)
    >>> entries = CouplingEntries(
    ...     1, 1, np.array([0, 1]), np.array([0]), np.array([1]), np.array([0]), np.array([2.0]), np.array([1, 1]),
    ...     np.array([0, 1]), np.array([0]), pattern, [(1, None)], True,
    ... )
    >>> make_route("dense", entries, np.array([4.0])).name
    'dense'
    """
    if name == "dense":
        return DenseRoute(entries)
    if name == "grouped":
        return GroupedRoute(entries, first_values)
    return SparseRoute(entries)
