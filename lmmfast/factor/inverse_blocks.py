"""Selected blocks of M⁻¹ = (Λ'Z'ZΛ + I)⁻¹ from the blocked factor, and the traces the
gradient of log|M| needs (:mod:`lmmfast.gradient`).

    ∂ log|M| / ∂θᵢ = 2 tr(M⁻¹ Λ'Z'Z Λᵢ) = 2 Σ over levels l of term t [M⁻¹ Λ'Z'Z]_ll[c, r]

for θᵢ at T_t[r, c]. [M⁻¹Λ'A]_ll = Σ_m (M⁻¹)_lm T_m' A_ml runs over the blocks A_ml that
Z'Z stores, so M⁻¹ is needed only on Z'Z's pattern. With the blocked factor

    L = [L11 0; L21 L22],   X = (L22 L22')⁻¹,   W = L21 L11⁻¹ (level by level),

the blocks are: X itself between later terms; −(X W)ₑ for the coupling of a first-term level
with the row e of the dense block (one k₁-vector yₑ per entry of L21); and
L11ₗ'⁻¹L11ₗ⁻¹ + Σₑ wₑ yₑ' on the first term's diagonal. Everything is read down the columns
of X, in the order the rank update writes them, so the whole costs about one inversion of
the dense block (``potri``) and two rank updates. No Λ⁻¹ appears: the gradient is as
accurate on and near the boundary as inside.
"""

from __future__ import annotations

from concurrent.futures import Executor

import numba
import numpy as np
from scipy.linalg import lapack

from lmmfast.factor.rank_update import UpdatePattern, map_shares


@numba.njit(cache=True, nogil=True)
def first_term_inverse_rows(L11: np.ndarray, level_of_entry: np.ndarray, values: np.ndarray) -> np.ndarray:
    """w_e = v_e L11ₗ⁻¹ for every entry e (row v_e of L21, l its level), same layout as ``values``."""
    k1 = L11.shape[1]
    out = np.empty_like(values)
    for e in range(level_of_entry.shape[0]):
        j = level_of_entry[e]
        base = e * k1
        # solve w L11 = v, i.e. L11' w' = v', from the last component back
        for b in range(k1 - 1, -1, -1):
            acc = values[base + b]
            for a in range(b + 1, k1):
                acc -= out[base + a] * L11[j, a, b]
            out[base + b] = acc / L11[j, b, b]
    return out


def dense_block_inverse(L22: np.ndarray | None, full: bool) -> np.ndarray:
    """X = (L22 L22')⁻¹ in Fortran order (empty without a dense block): its lower triangle,
    mirrored onto the upper where ``full``."""
    if L22 is None:
        return np.zeros((0, 0), order="F")
    inverse, info = lapack.dpotri(L22, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dpotri failed (info={info}) on a positive definite factor")
    inverse = np.asfortranarray(inverse)
    if full:
        mirror_lower(inverse)
    return inverse


def dense_diagonal_blocks(
    inverse: np.ndarray, sizes: np.ndarray, levels: np.ndarray, starts: np.ndarray
) -> list[np.ndarray]:
    """The (levels, k, k) diagonal blocks of the terms held in the dense block, from its part
    of M⁻¹ (``inverse``, its lower triangle read), each term's columns starting at ``starts``."""
    blocks = []
    for k, count, start in zip(sizes.tolist(), levels.tolist(), starts.tolist()):
        first = start + np.arange(count) * k
        block = np.empty((count, k, k))
        for r in range(k):
            for c in range(r + 1):
                block[:, r, c] = block[:, c, r] = inverse[first + r, first + c]
        blocks.append(block)
    return blocks


def dense_value_positions(
    term_a: np.ndarray, term_b: np.ndarray, row: np.ndarray, col: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For the blocks of Z'Z within the dense block (terms, first row and column, as the
    blocked factor keeps them), the position in the dense block's lower triangle of each of
    their values, row-major within each block: where M⁻¹ at those values is read.

    Examples
    --------
    >>> rows, cols = dense_value_positions(np.array([0]), np.array([0]), np.array([0]), np.array([0]), np.array([2]))
    >>> rows.tolist(), cols.tolist()
    ([0, 1, 1, 1], [0, 0, 0, 1])
    """
    ka, kb = sizes[term_a].astype(np.int64), sizes[term_b].astype(np.int64)
    widths = ka * kb
    within = np.arange(int(widths.sum()), dtype=np.int64) - np.repeat(np.cumsum(widths) - widths, widths)
    kb_each = np.repeat(kb, widths)
    R = np.repeat(row, widths) + within // kb_each
    C = np.repeat(col, widths) + within % kb_each
    return np.maximum(R, C).astype(np.int64), np.minimum(R, C).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def mirror_lower(X: np.ndarray) -> None:
    """Copy the lower triangle of the square ``X`` onto its upper triangle, in place."""
    n = X.shape[0]
    for c in range(n):
        for r in range(c + 1, n):
            X[c, r] = X[r, c]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _coupled_pairs(k1, rows, level_end, column_ptr, column_entries, group_ptr, groups, w, X, out):
    """out[e] += Σ_u X[rows[u], rows[e]] w_u over e's level, for the pairs of entries whose
    upper row lies in the column groups ``groups``. Each pair (e, u), rows[e] < rows[u],
    is visited once, from e's column, and feeds both yₑ and y_u: half the reads of a full
    pass over every level, and only X's lower triangle is read."""
    for g in groups:
        c0 = group_ptr[g]
        width = group_ptr[g + 1] - c0
        for t in range(column_ptr[c0], column_ptr[c0 + 1]):
            e = column_entries[t]
            end = level_end[e]
            # the group's own entries e … e + width − 1, both triangles of its diagonal block
            for j in range(width):
                for i in range(width):
                    x = X[c0 + max(i, j), c0 + min(i, j)]
                    for b in range(k1):
                        out[(e + j) * k1 + b] += x * w[(e + i) * k1 + b]
            below = e + width
            # scalar accumulators for the common shapes, so the loop keeps them in registers
            if width == 1 and k1 == 1:
                we = w[e]
                acc = 0.0
                for u in range(below, end):
                    x = X[rows[u], c0]
                    acc += x * w[u]
                    out[u] += x * we
                out[e] += acc
            elif width == 2 and k1 == 2:
                a0 = w[2 * e]
                a1 = w[2 * e + 1]
                b0 = w[2 * e + 2]
                b1 = w[2 * e + 3]
                s0 = 0.0
                s1 = 0.0
                t0 = 0.0
                t1 = 0.0
                for u in range(below, end):
                    r = rows[u]
                    x0 = X[r, c0]
                    x1 = X[r, c0 + 1]
                    w0 = w[2 * u]
                    w1 = w[2 * u + 1]
                    s0 += x0 * w0
                    s1 += x0 * w1
                    t0 += x1 * w0
                    t1 += x1 * w1
                    out[2 * u] += x0 * a0 + x1 * b0
                    out[2 * u + 1] += x0 * a1 + x1 * b1
                out[2 * e] += s0
                out[2 * e + 1] += s1
                out[2 * e + 2] += t0
                out[2 * e + 3] += t1
            else:
                for u in range(below, end):
                    r = rows[u]
                    for j in range(width):
                        x = X[r, c0 + j]
                        for b in range(k1):
                            out[(e + j) * k1 + b] += x * w[u * k1 + b]
                            out[u * k1 + b] += x * w[(e + j) * k1 + b]


def coupled_rows(
    pattern: UpdatePattern, w: np.ndarray, X: np.ndarray, threads: int = 1, executor: Executor | None = None
) -> np.ndarray:
    """Y = (X W) at the entries of L21: yₑ = Σ_u X[rows_u, rows_e] w_u over e's level.

    Reads only X's lower triangle, each column once per entry in it, the columns of a group
    (:class:`~lmmfast.factor.rank_update.UpdatePattern`) together. A pair of entries adds to
    both, so threads (those of ``executor`` where given) write into their own copies of Y,
    summed at the end. On InstEval one pass took 8.2 ms against 15.4 ms for a pass that
    reads every level whole (one thread, one run of the kernels alone).

    Examples
    --------
    >>> pattern = UpdatePattern.build(1, np.array([0, 2]), np.array([0, 1]), 2)
    >>> X = np.array([[2.0, 1.0], [1.0, 3.0]], order="F")
    >>> coupled_rows(pattern, np.array([1.0, 1.0]), X).tolist()  # X @ [1, 1]
    [3.0, 4.0]
    """
    p = pattern
    groups = np.arange(len(p.group_ptr) - 1, dtype=np.int64)

    def run(share: np.ndarray) -> np.ndarray:
        out = np.zeros(len(p.rows) * p.k1)
        _coupled_pairs(p.k1, p.rows, p.level_end, p.column_ptr, p.column_entries, p.group_ptr, share, w, X, out)
        return out

    parts = map_shares(run, groups, threads, executor)
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


@numba.njit(cache=True, nogil=True)
def first_term_inverse_blocks(L11: np.ndarray, entry_ptr: np.ndarray, w: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(M⁻¹)ₗₗ = L11ₗ'⁻¹L11ₗ⁻¹ + Σ_{e in l} wₑ yₑ' for every first-term level l."""
    n1, k1, _ = L11.shape
    out = np.zeros((n1, k1, k1))
    inverse = np.zeros((k1, k1))
    for j in range(n1):
        for c in range(k1):
            for r in range(k1):
                inverse[r, c] = 0.0
            inverse[c, c] = 1.0 / L11[j, c, c]
            for r in range(c + 1, k1):
                acc = 0.0
                for m in range(c, r):
                    acc -= L11[j, r, m] * inverse[m, c]
                inverse[r, c] = acc / L11[j, r, r]
        for a in range(k1):
            for b in range(k1):
                acc = 0.0
                for m in range(k1):
                    acc += inverse[m, a] * inverse[m, b]
                for e in range(entry_ptr[j], entry_ptr[j + 1]):
                    acc += w[e * k1 + a] * y[e * k1 + b]
                out[j, a, b] = acc
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def add_block_traces(inverse, ka, kb, values, base, templates, lam_a, lam_b, mirrored, out, out_a, out_b):
    """For a stored block B = A_ab (ka × kb at ``values[base:]``) with the matching block
    N = (M⁻¹)_ab (``inverse``, ka × kb): out_b += N' T_a' B and, unless the block is on the
    diagonal, out_a += N T_b' B'."""
    for x in range(kb):
        for y in range(kb):
            acc = 0.0
            for i in range(ka):
                for j in range(i, ka):
                    acc += inverse[i, x] * templates[lam_a + j * ka + i] * values[base + j * kb + y]
            out[out_b + x * kb + y] += acc
    if mirrored:
        for x in range(ka):
            for y in range(ka):
                acc = 0.0
                for i in range(kb):
                    for j in range(i, kb):
                        acc += inverse[x, i] * templates[lam_b + j * kb + i] * values[base + y * kb + j]
                out[out_a + x * ka + y] += acc


@numba.njit(cache=True, nogil=True)
def logdet_trace_sums(
    k1,
    first_values,
    first_inverse,
    dense_term_a,
    dense_term_b,
    dense_row,
    dense_col,
    dense_offsets,
    dense_values,
    X,
    sizes,
    templates,
    template_offsets,
    out,
):
    """``out`` (packed like the templates) += Σₗ [M⁻¹Λ'Z'Z]ₗₗ per term, over the first
    term's diagonal blocks and the blocks within the dense block (rows/columns relative to
    it, row term ≥ column term as Z'Z stores them); the first term's couplings are added
    by :func:`coupling_trace_sums`. Reads the lower triangle of X only."""
    lam1 = template_offsets[0]
    n1 = first_inverse.shape[0]
    for j in range(n1):
        add_block_traces(
            first_inverse[j], k1, k1, first_values, j * k1 * k1, templates, lam1, lam1, False, out, lam1, lam1
        )
    most = 1
    for t in range(sizes.shape[0]):
        most = max(most, sizes[t])
    scratch = np.empty((most, most))
    for s in range(dense_term_a.shape[0]):
        ta = dense_term_a[s]
        tb = dense_term_b[s]
        ka = sizes[ta]
        kb = sizes[tb]
        r0 = dense_row[s]
        c0 = dense_col[s]
        if ka == 1 and kb == 1:  # scalar blocks (most of them in `||` and intercept models)
            x = X[r0, c0] * dense_values[dense_offsets[s]]
            lam_a = template_offsets[ta]
            lam_b = template_offsets[tb]
            out[lam_b] += x * templates[lam_a]
            if r0 != c0:
                out[lam_a] += x * templates[lam_b]
            continue
        # X's lower triangle: blocks between terms or levels lie in it, diagonal blocks straddle it
        for i in range(ka):
            for jj in range(kb):
                scratch[i, jj] = X[max(r0 + i, c0 + jj), min(r0 + i, c0 + jj)]
        mirrored = r0 != c0
        add_block_traces(
            scratch[:ka, :kb],
            ka,
            kb,
            dense_values,
            dense_offsets[s],
            templates,
            template_offsets[ta],
            template_offsets[tb],
            mirrored,
            out,
            template_offsets[ta],
            template_offsets[tb],
        )


#: Width (kₜk₁) from which the couplings' products go to BLAS.
MIN_BLAS_WIDTH = 16


@numba.njit(cache=True, nogil=True)
def _column_products(Y, B):
    """Y'B for tall, narrow Y and B, in one pass without BLAS."""
    out = np.zeros((Y.shape[1], B.shape[1]))
    for s in range(Y.shape[0]):
        for a in range(Y.shape[1]):
            y = Y[s, a]
            for b in range(B.shape[1]):
                out[a, b] += y * B[s, b]
    return out


def coupling_trace_sums(
    k1: int,
    term_entries: list[tuple[int, np.ndarray | None]],
    cross_values: np.ndarray,
    coupled: np.ndarray,
    sizes: np.ndarray,
    templates: np.ndarray,
    template_offsets: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out`` += the couplings' share of Σₗ [M⁻¹Λ'Z'Z]ₗₗ, for the first term and each later one.

    The block of M⁻¹ at a coupling block Bₛ = (Z'Z)ₛ (kₜ rows of term t, the first term's k₁
    columns) is −Yₛ, so the first term gains −Σₛ Yₛ'Tₜ'Bₛ and term t gains −Σₛ YₛT₁'Bₛ':
    contractions of one (kₜk₁)² matrix, Σₛ vec(Yₛ) vec(Bₛ)', formed by a single matrix
    product. ``term_entries`` lists, per later term, the positions of its blocks' values in
    ``cross_values`` (and ``coupled``, laid out alike), or None where that term owns them all.

    Examples
    --------
    >>> out = np.zeros(2)
    >>> coupling_trace_sums(1, [(1, None)], np.array([2.0, 3.0]), np.array([1.0, 1.0]),
    ...                     np.array([1, 1]), np.array([1.0, 1.0]), np.array([0, 1]), out)
    >>> out.tolist()  # −Σ yₛ bₛ for each side
    [-5.0, -5.0]
    """
    lam1 = int(template_offsets[0])
    first = templates[lam1 : lam1 + k1 * k1].reshape(k1, k1)
    for t, entries in term_entries:
        k = int(sizes[t])
        lam = int(template_offsets[t])
        own = templates[lam : lam + k * k].reshape(k, k)
        Y = (coupled if entries is None else coupled[entries]).reshape(-1, k * k1)
        B = (cross_values if entries is None else cross_values[entries]).reshape(-1, k * k1)
        # Q[i, x, j, y] = Σₛ Yₛ[i, x] Bₛ[j, y]: one matrix product over all of t's blocks, by
        # BLAS where its result is large enough; a long product with a tiny result (scalar
        # terms) left OpenBLAS's threads spinning and slowed everything after it 1.5-fold
        if k * k1 >= MIN_BLAS_WIDTH:
            Q = (Y.T @ B).reshape(k, k1, k, k1)
        else:
            Q = _column_products(Y, B).reshape(k, k1, k, k1)
        out[lam1 : lam1 + k1 * k1] -= np.einsum("ji,ixjy->xy", own, Q).ravel()
        out[lam : lam + k * k] -= np.einsum("ji,xiyj->xy", first, Q).ravel()
