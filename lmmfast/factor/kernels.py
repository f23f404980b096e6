"""Small numba kernels shared by the factorisation paths."""

from __future__ import annotations

import numba


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
