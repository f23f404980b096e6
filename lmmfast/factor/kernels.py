"""Small numba kernels shared by the factorisation paths."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def sandwich_entry(values, base, ka, kb, templates, lam_a, lam_b, i, j):
    """Entry (i, j) of Λa' B Λb, for B the row-major ka × kb block at ``values[base:]`` and
    Λa, Λb lower-triangular templates stored row-major at ``templates[lam_a:]``, ``[lam_b:]``."""
    acc = 0.0
    for r in range(i, ka):
        lri = templates[lam_a + r * ka + i]
        if lri == 0.0:
            continue
        inner = 0.0
        for c in range(j, kb):
            inner += values[base + r * kb + c] * templates[lam_b + c * kb + j]
        acc += lri * inner
    return acc


@numba.njit(cache=True, nogil=True, inline="always")
def sandwich_block(values, base, ka, kb, templates, lam_a, lam_b, scratch, out, out_base):
    """``out[out_base:]`` ← Λa' B Λb (row-major ka × kb) for the block B and templates as in
    :func:`sandwich_entry`: B Λb first, then Λa' times it, O(ka kb (ka + kb)) instead of
    O(ka² kb²) for the entries one by one. ``scratch`` holds at least ka × kb values."""
    for r in range(ka):
        for j in range(kb):
            acc = 0.0
            for c in range(j, kb):
                acc += values[base + r * kb + c] * templates[lam_b + c * kb + j]
            scratch[r * kb + j] = acc
    for i in range(ka):
        for j in range(kb):
            acc = 0.0
            for r in range(i, ka):
                acc += templates[lam_a + r * ka + i] * scratch[r * kb + j]
            out[out_base + i * kb + j] = acc


@numba.njit(cache=True, nogil=True)
def scale_blocks(term_a, term_b, block_row, block_col, block_offsets, values, sizes, templates, template_offsets, out):
    """``out`` (lower triangle) ← Λ'BΛ + I for B given by its stored blocks (kₐ × k_b at
    ``values[block_offsets[s]:]``, first row and column ``block_row[s]``, ``block_col[s]``, on
    or below the diagonal; Λ block-diagonal with each term's template): the triangle is
    zeroed and only the stored blocks are scaled, where a pass over every entry would cost a
    product per entry and band."""
    n = out.shape[0]
    for c in range(n):
        for r in range(c, n):
            out[r, c] = 0.0
        out[c, c] = 1.0
    most = 1
    for t in range(sizes.shape[0]):
        most = max(most, sizes[t])
    scratch = np.empty(most * most)
    block = np.empty(most * most)
    for s in range(term_a.shape[0]):
        ka = sizes[term_a[s]]
        kb = sizes[term_b[s]]
        r0 = block_row[s]
        c0 = block_col[s]
        sandwich_block(
            values,
            block_offsets[s],
            ka,
            kb,
            templates,
            template_offsets[term_a[s]],
            template_offsets[term_b[s]],
            scratch,
            block,
            0,
        )
        for i in range(ka):
            for j in range(kb):
                if r0 + i >= c0 + j:
                    out[r0 + i, c0 + j] += block[i * kb + j]
