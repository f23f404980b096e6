"""Z'Z V from the blocked factor's own copy of Z'Z, for the gradient (:mod:`lmmfast.gradient`).

The cross-products keep Z'Z as one small block per pair of co-occurring levels, each found
through its terms and levels; the blocked factor holds the same numbers laid out for its
elimination: the first term's diagonal blocks, its coupling to the later terms level by
level with the rows in order (as L21), and the blocks within the dense part. Read that way,
the coupling's product streams through the entries with the first term's rows of V and of
the result in registers, and the dense coupling's is two BLAS products.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def coupling_times(cross_ptr, cross_row, cross_term, cross_offsets, sizes, values, V1, V2, out1, out2):
    """out2 += C V1 and out1 += C' V2 for the coupling C = Z₂'Z₁, whose blocks for first-term
    level j are ``cross_ptr[j]`` … ``cross_ptr[j + 1]`` (rows of the dense part from
    ``cross_row``, kₜ × k₁ values from ``cross_offsets``, laid out as L21). V1, out1: levels ×
    k₁ × columns; V2, out2: dense rows × columns."""
    n1, k1, m = V1.shape
    scalar = k1 == 1 and m == 1
    for t in range(1, sizes.shape[0]):
        scalar = scalar and sizes[t] == 1
    if scalar:  # one value per entry (crossed intercepts): no inner loops at all
        for j in range(n1):
            own = V1[j, 0, 0]
            acc = 0.0
            for s in range(cross_ptr[j], cross_ptr[j + 1]):
                row = cross_row[s]
                acc += values[s] * V2[row, 0]
                out2[row, 0] += values[s] * own
            out1[j, 0, 0] += acc
        return
    for j in range(n1):
        for s in range(cross_ptr[j], cross_ptr[j + 1]):
            row = cross_row[s]
            base = cross_offsets[s]
            for i in range(sizes[cross_term[s]]):
                for col in range(m):
                    acc = 0.0
                    other = V2[row + i, col]
                    for b in range(k1):
                        value = values[base + i * k1 + b]
                        acc += value * V1[j, b, col]
                        out1[j, b, col] += value * other
                    out2[row + i, col] += acc


@numba.njit(cache=True, nogil=True)
def dense_block_times(term_a, term_b, block_row, block_col, block_offsets, values, sizes, V, out):
    """out += B V for the blocks of Z₂'Z₂ (kₐ × k_b at ``values[block_offsets[s]:]``, first row
    and column within the dense part), each block below the diagonal standing for its mirror
    image as well."""
    for s in range(term_a.shape[0]):
        ka = sizes[term_a[s]]
        kb = sizes[term_b[s]]
        r0 = block_row[s]
        c0 = block_col[s]
        base = block_offsets[s]
        mirrored = r0 != c0
        for i in range(ka):
            for j in range(kb):
                value = values[base + i * kb + j]
                for col in range(V.shape[1]):
                    out[r0 + i, col] += value * V[c0 + j, col]
                    if mirrored:
                        out[c0 + j, col] += value * V[r0 + i, col]
