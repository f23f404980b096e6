"""The whole profiled criterion of a small model in one compiled call.

For a small model an evaluation by the factorisation paths costs some thirty calls from
Python, each far dearer than its arithmetic. Here the criterion is one numba function: it
scales the augmented matrix

    Ω = [Z X y]'[Z X y],  Ωθ = [[Λ'Z'ZΛ + I, Λ'Z'[X y]], [[X y]'ZΛ, [X y]'[X y]]]

and factors it by an envelope (skyline) Cholesky, Ωθ = LL'. The envelope — in each row, the
columns from its first non-zero to the diagonal — is preserved by the factorisation, so the
work is Σ wᵢ² / 2 for rows of width wᵢ: a few microseconds for the designs of a textbook
(one grouping factor's blocks, nested or small crossed factors). The diagonal of L gives
everything (MixedModels.jl's "blocked" view of the same matrix): log|L_Z|², log|R_X|², and
r² = L[-1, -1]².

The same factor gives the gradient (:mod:`lmmfast.factor.envelope_gradient`, in the same
call) and, at the optimum, the solution [û; β̂], b = Λû and R_X. The criterion is built only
where its estimated work is small (:data:`MAX_WORK`); larger models keep the factorisation
paths, whose per-call overhead is then negligible.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numba
import numpy as np

from lmmfast.crossprod import CrossProducts
from lmmfast.factor.envelope_gradient import column_structure, envelope_gradient, solution_and_rx
from lmmfast.factor.pattern import block_coordinates
from lmmfast.parameters import ThetaLayout

#: Built when the envelope Cholesky and the scaling need at most this many multiply-adds
#: (a few tens of microseconds; above that the factorisation paths' call overhead matters
#: little).
MAX_WORK = 60_000


def augmented_matrix(cp: CrossProducts) -> np.ndarray:
    """Ω = [Z X y]'[Z X y] as a dense symmetric array (engine order: Z's columns term after
    term, level-major, then X's, then y).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.prepare import prepare
    >>> cp = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective.cross_products
    >>> augmented_matrix(cp).shape
    (8, 8)
    """
    q, p = cp.q, cp.p
    omega = np.zeros((q + p + 1, q + p + 1))
    rows, cols = block_coordinates(cp)
    omega[rows, cols] = cp.block_values
    omega[cols, rows] = cp.block_values
    omega[:q, q:] = cp.ZtXy
    omega[q:, :q] = cp.ZtXy.T
    omega[q:, q:] = cp.XytXy
    return omega


def column_blocks(cp: CrossProducts, layout: ThetaLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each column of Ω: the first column of its level's block, its position in the
    block, the block's size, and where its term's template starts among the packed templates
    (X's and y's columns are blocks of one with no template: −1)."""
    q, p = cp.q, cp.p
    width = q + p + 1
    block_start = np.arange(width, dtype=np.int64)
    position = np.zeros(width, dtype=np.int64)
    size = np.ones(width, dtype=np.int64)
    template = np.full(width, -1, dtype=np.int64)
    for term, (k, levels, offset) in enumerate(zip(cp.term_sizes, cp.term_levels, cp.column_offsets)):
        columns = np.arange(int(offset), int(offset + k * levels))
        local = columns - int(offset)
        position[columns] = local % k
        block_start[columns] = columns - local % k
        size[columns] = k
        template[columns] = layout.template_offsets[term]
    return block_start, position, size, template


def envelope_starts(cp: CrossProducts, block_start: np.ndarray) -> np.ndarray:
    """Per row of Ω, the first column of its envelope: the first column of the first level
    block its level's block couples to (the whole block: Λ mixes within it); 0 for X's and
    y's rows."""
    q = cp.q
    width = q + cp.p + 1
    first = np.zeros(width, dtype=np.int64)
    first[:q] = block_start[:q]
    rows, cols = block_coordinates(cp)
    np.minimum.at(first, rows, block_start[cols])  # entries above the diagonal start no earlier
    return first


def envelope_work(first: np.ndarray, size: np.ndarray) -> int:
    """Multiply-adds of one evaluation: the Cholesky's Σ wᵢ²/2 and the scaling's k² per
    entry of the envelope."""
    widths = np.arange(len(first)) - first + 1
    return int(np.sum(widths * widths) // 2 + np.sum(widths * size * size))


@numba.njit(cache=True, nogil=True)
def _envelope_criterion(theta, positions, packed, omega, work, columns, n_z):
    """Fill ``work``'s envelope with Ωθ, factor it, and return (log|L_Z|², log|R_X|², r²);
    r² = -1 where the fixed-effects block or the response's pivot is not positive.
    ``columns`` holds, per column of Ω: its envelope's first column, its level block's first
    column, its position in the block, the block's size and its template's offset in
    ``packed`` (−1: none). One array each would cost more to pass than to use."""
    packed[:] = 0.0
    for index in range(theta.shape[0]):
        packed[positions[index]] = theta[index]
    width = omega.shape[0]
    first = columns[0]
    for i in range(width):
        si, pi, ki, ti = columns[1, i], columns[2, i], columns[3, i], columns[4, i]
        for j in range(first[i], i + 1):
            sj, pj, kj, tj = columns[1, j], columns[2, j], columns[3, j], columns[4, j]
            total = 0.0
            # (Λ'ΩΛ)[i, j] = Σ_r Σ_s T_i[r, pi] Ω[si + r, sj + s] T_j[s, pj]; templates are
            # lower triangular, so r ≥ pi and s ≥ pj
            for r in range(pi, ki):
                left = 1.0 if ti < 0 else packed[ti + r * ki + pi]
                if left == 0.0:
                    continue
                inner = 0.0
                for s in range(pj, kj):
                    right = 1.0 if tj < 0 else packed[tj + s * kj + pj]
                    inner += omega[si + r, sj + s] * right
                total += left * inner
            work[i, j] = total
        if i < n_z:
            work[i, i] += 1.0
    logdet_z = 0.0
    logdet_x = 0.0
    for i in range(width):
        fi = first[i]
        for j in range(fi, i):
            start = max(fi, first[j])
            value = work[i, j]
            for k in range(start, j):
                value -= work[i, k] * work[j, k]
            work[i, j] = value / work[j, j]
        pivot = work[i, i]
        for k in range(fi, i):
            pivot -= work[i, k] * work[i, k]
        if not pivot > 0.0:
            return logdet_z, logdet_x, -1.0
        work[i, i] = np.sqrt(pivot)
        if i < n_z:
            logdet_z += np.log(pivot)
        elif i < width - 1:
            logdet_x += np.log(pivot)
    return logdet_z, logdet_x, work[width - 1, width - 1] ** 2


@numba.njit(cache=True, nogil=True, inline="always")
def _profiled_value(logdet_z, logdet_x, r2, reml, dof, offset):
    """log|L_Z|² [+ log|R_X|² for REML] + dof (1 + log(2π r²/dof)) + offset; inf where r² is
    not positive. One expression for both kernels, so that their values agree to the bit."""
    if not r2 > 0.0:
        return np.inf
    value = logdet_z + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof)) + offset
    return value + logdet_x if reml else value


@numba.njit(cache=True, nogil=True)
def _criterion_value(theta, positions, packed, omega, work, columns, n_z, reml, dof, offset):
    """The profiled criterion at θ (:func:`_envelope_criterion`, then :func:`_profiled_value`)."""
    logdet_z, logdet_x, r2 = _envelope_criterion(theta, positions, packed, omega, work, columns, n_z)
    return _profiled_value(logdet_z, logdet_x, r2, reml, dof, offset)


@numba.njit(cache=True, nogil=True)
def _criterion_value_and_gradient(
    theta, positions, packed, omega, work, columns, n_z, inverse, pointers, rows, parameters, p, reml, dof, offset, out
):
    """The profiled criterion at θ, and its gradient into ``out`` where it is finite: one
    call from Python per evaluation."""
    logdet_z, logdet_x, r2 = _envelope_criterion(theta, positions, packed, omega, work, columns, n_z)
    if r2 > 0.0:
        envelope_gradient(packed, omega, work, inverse, pointers, rows, columns, parameters, n_z, p, reml, dof, out)
    return _profiled_value(logdet_z, logdet_x, r2, reml, dof, offset)


#: What :func:`_criterion_value_and_gradient` takes after θ and before the settings: positions,
#: packed templates, Ω, the factor's work array, the columns' structure, q, the inverse's work
#: array, the envelope by columns (pointers, rows), θ's parameters, p.
_KernelArrays = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int
]


class EnvelopeCriterion:
    """The profiled criterion of a small model, its gradient and its solution, each in one
    compiled call.

    Built by :func:`envelope_criterion`; each copy has its own work array (:meth:`fresh`),
    so copies can run in different threads.

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.prepare import prepare
    >>> objective = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective
    >>> criterion = envelope_criterion(objective.cross_products, objective.layout)
    >>> logdet_z, logdet_x, r2 = criterion.parts(np.array([0.75]))
    >>> criterion.size, round(r2, 1)
    (8, 73612.3)
    """

    def __init__(self, cp: CrossProducts, layout: ThetaLayout) -> None:
        block_start, position, size, template = column_blocks(cp, layout)
        first = envelope_starts(cp, block_start)
        sizes = np.asarray(layout.sizes, dtype=np.int64)
        positions = layout.template_offsets[layout.term_of] + layout.rows * sizes[layout.term_of] + layout.cols
        # the structure is shared by copies and never written; the numbers are each copy's own
        self._positions = positions.astype(np.int64)
        self._columns = np.vstack([first, block_start, position, size, template]).astype(np.int64)
        self._pointers, self._rows = column_structure(first)
        term = layout.term_of
        self._parameters = np.vstack(
            [cp.column_offsets[term], cp.term_sizes[term], cp.term_levels[term], layout.rows, layout.cols]
        ).astype(np.int64)
        self._q = cp.q
        self._p = cp.p
        self._omega = augmented_matrix(cp)
        self._work = np.zeros_like(self._omega)
        self._inverse = np.zeros_like(self._omega)
        self._packed = np.zeros(int(np.sum(sizes * sizes)))

    @property
    def size(self) -> int:
        """Order of the augmented matrix, q + p + 1."""
        return int(self._omega.shape[0])

    @property
    def work(self) -> int:
        """Multiply-adds of one evaluation."""
        return envelope_work(self._columns[0], self._columns[3])

    def parts(self, theta: np.ndarray) -> tuple[float, float, float]:
        """(log|L_Z|², log|R_X|², r²) at ``theta``; r² is −1 where Ωθ is not positive definite."""
        return _envelope_criterion(
            theta, self._positions, self._packed, self._omega, self._work, self._columns, self._q
        )

    def value(self, theta: np.ndarray, reml: bool, dof: float, offset: float) -> float:
        """The profiled criterion log|L_Z|² [+ log|R_X|² for REML] + dof (1 + log(2π r²/dof))
        + ``offset`` at ``theta`` (inf where Ωθ is not positive definite).

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.prepare import prepare
        >>> objective = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective
        >>> criterion = envelope_criterion(objective.cross_products, objective.layout)
        >>> round(criterion.value(np.array([0.75]), True, 29.0, 0.0), 4)
        319.7299
        """
        return _criterion_value(
            theta, self._positions, self._packed, self._omega, self._work, self._columns, self._q, reml, dof, offset
        )

    def value_and_gradient(self, theta: np.ndarray, reml: bool, dof: float, offset: float, out: np.ndarray) -> float:
        """:meth:`value`, and its gradient over θ into ``out`` where the value is finite
        (:mod:`lmmfast.factor.envelope_gradient`).

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.prepare import prepare
        >>> objective = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective
        >>> criterion = envelope_criterion(objective.cross_products, objective.layout)
        >>> gradient = np.zeros(1)
        >>> value = criterion.value_and_gradient(np.array([0.75]), True, 29.0, 0.0, gradient)
        >>> gradient.round(4).tolist()
        [-1.6201]
        """
        return _criterion_value_and_gradient(theta, *self._kernel_arrays(), reml, dof, offset, out)

    def _kernel_arrays(self) -> _KernelArrays:
        """This copy's arrays in the order :func:`_criterion_value_and_gradient` takes them
        after θ (the structure, the numbers, the gradient's work space)."""
        return (
            self._positions,
            self._packed,
            self._omega,
            self._work,
            self._columns,
            self._q,
            self._inverse,
            self._pointers,
            self._rows,
            self._parameters,
            self._p,
        )

    def gradient_evaluator(self, reml: bool, dof: float, offset: float) -> Callable[[np.ndarray, np.ndarray], float]:
        """θ, out ↦ :meth:`value_and_gradient` with these settings, its arrays bound once: the
        optimiser's call, whose every step from Python costs as much as the arithmetic.

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.prepare import prepare
        >>> objective = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective
        >>> criterion = envelope_criterion(objective.cross_products, objective.layout)
        >>> evaluate, gradient = criterion.gradient_evaluator(True, 29.0, 0.0), np.zeros(1)
        >>> evaluate(np.array([0.75]), gradient) == criterion.value(np.array([0.75]), True, 29.0, 0.0)
        True
        """
        arguments = (*self._kernel_arrays(), reml, dof, offset)

        def evaluate(theta: np.ndarray, out: np.ndarray) -> float:
            return _criterion_value_and_gradient(theta, *arguments, out)

        return evaluate

    def solution(self, theta: np.ndarray) -> tuple[float, float, float, np.ndarray, np.ndarray, np.ndarray]:
        """(log|L_Z|², log|R_X|², r²) at ``theta`` with the solution [û; β̂] (the spherical
        modes, then the fixed effects), the random effects b = Λû and R_X' (lower, p × p); r²
        is −1 and the arrays are empty where Ωθ is not positive definite.

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.prepare import prepare
        >>> objective = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective
        >>> criterion = envelope_criterion(objective.cross_products, objective.layout)
        >>> *_, coefficients, effects, rx_t = criterion.solution(np.array([0.75]))
        >>> round(float(coefficients[-1]), 2), rx_t.shape
        (1527.5, (1, 1))
        """
        logdet_z, logdet_x, r2 = self.parts(theta)
        if not r2 > 0.0:
            return logdet_z, logdet_x, r2, np.zeros(0), np.zeros(0), np.zeros((0, 0))
        coefficients, effects, rx_t = solution_and_rx(
            self._work, self._pointers, self._rows, self._packed, self._columns, self._q, self._p
        )
        return logdet_z, logdet_x, r2, coefficients, effects, rx_t

    def fresh(self, cross_products: CrossProducts | None = None) -> EnvelopeCriterion:
        """A copy with its own work array, optionally for the cross-products of the same Z
        and X with a new response (:meth:`CrossProducts.with_response`): only Ω's [X y]
        rows and columns are taken from them."""
        twin = copy.copy(self)
        # never read before the kernels write them: the envelope's entries, every template
        twin._work = np.empty_like(self._work)
        twin._inverse = np.empty_like(self._inverse)
        twin._packed = np.empty_like(self._packed)
        if cross_products is not None:
            q = self._q
            twin._omega = self._omega.copy()
            twin._omega[:q, q:] = cross_products.ZtXy
            twin._omega[q:, :q] = cross_products.ZtXy.T
            twin._omega[q:, q:] = cross_products.XytXy
        return twin


def envelope_criterion(cp: CrossProducts, layout: ThetaLayout, max_work: int = MAX_WORK) -> EnvelopeCriterion | None:
    """The compiled criterion where one evaluation needs at most ``max_work`` multiply-adds,
    else None (the model is not small).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.prepare import prepare
    >>> objective = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy")).objective
    >>> envelope_criterion(objective.cross_products, objective.layout).size
    39
    """
    q, p = cp.q, cp.p
    # X's and y's rows span all q + p + 1 columns: the work is at least (p + 1)(q + p)²/2
    if (p + 1) * (q + p + 1) ** 2 // 2 > max_work:
        return None
    block_start, _, size, _ = column_blocks(cp, layout)
    if envelope_work(envelope_starts(cp, block_start), size) > max_work:
        return None
    return EnvelopeCriterion(cp, layout)
