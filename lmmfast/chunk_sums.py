"""Cross-products summed over chunks of rows, in the form that adds fast.

Data read in chunks give one :class:`lmmfast.crossprod.CrossProducts` per chunk; their sum
is the whole data's. A chunk's Z'Z blocks of two different terms exist only for the pairs of
levels it holds, so the sum must match them: :class:`ChunkSums` keeps each pair of terms'
blocks sorted by a key of their two levels, and adds two sums by merging the sorted keys
(linear in the blocks, as a merge sort's merge); only the total becomes a CrossProducts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from lmmfast.crossprod import CrossProducts


@numba.njit(cache=True, nogil=True)
def _merge_sorted_blocks(keys_a, blocks_a, keys_b, blocks_b):
    """Two lists of blocks, each sorted by strictly increasing keys, as one: the union of the
    keys in order, the blocks of a key in both added."""
    na, nb, width = keys_a.shape[0], keys_b.shape[0], blocks_a.shape[1]
    keys = np.empty(na + nb, dtype=np.int64)
    blocks = np.empty((na + nb, width))
    i = j = used = 0
    while i < na or j < nb:
        if j >= nb or (i < na and keys_a[i] < keys_b[j]):
            keys[used] = keys_a[i]
            for c in range(width):
                blocks[used, c] = blocks_a[i, c]
            i += 1
        elif i >= na or keys_b[j] < keys_a[i]:
            keys[used] = keys_b[j]
            for c in range(width):
                blocks[used, c] = blocks_b[j, c]
            j += 1
        else:
            keys[used] = keys_a[i]
            for c in range(width):
                blocks[used, c] = blocks_a[i, c] + blocks_b[j, c]
            i += 1
            j += 1
        used += 1
    if 4 * used < 3 * (na + nb):  # many keys in both: give the unused quarter or more back
        return keys[:used].copy(), blocks[:used].copy()
    return keys[:used], blocks[:used]


@dataclass(frozen=True)
class ChunkSums:
    """The cross-products of some of a model's rows (one chunk, or several added).

    Attributes
    ----------
    term_sizes, term_levels, column_offsets : numpy.ndarray
        As :class:`lmmfast.crossprod.CrossProducts`' (the same for every chunk).
    keys : tuple of numpy.ndarray
        Per pair of terms (a, b ≤ a, in the order of the cross-products), each block's
        ``level_a · levels_b + level_b``, increasing.
    blocks : tuple of numpy.ndarray
        Per pair of terms, the blocks (one row-major k_a·k_b row each) in the keys' order.
    ZtXy, XytXy : numpy.ndarray
    n : int
    sum_log_weights : float
    """

    term_sizes: np.ndarray
    term_levels: np.ndarray
    column_offsets: np.ndarray
    keys: tuple[np.ndarray, ...]
    blocks: tuple[np.ndarray, ...]
    ZtXy: np.ndarray
    XytXy: np.ndarray
    n: int
    sum_log_weights: float

    @classmethod
    def of(cls, cross_products: CrossProducts) -> ChunkSums:
        """The sums of one chunk's cross-products."""
        cp = cross_products
        sizes, levels = cp.term_sizes, cp.term_levels
        pair = cp.slot_term_a * (cp.slot_term_a + 1) // 2 + cp.slot_term_b
        terms = len(sizes)
        bounds = np.searchsorted(pair, np.arange(terms * (terms + 1) // 2 + 1))
        keys, blocks = [], []
        index = 0
        for ta in range(terms):
            for tb in range(ta + 1):
                start, stop = int(bounds[index]), int(bounds[index + 1])
                width = int(sizes[ta] * sizes[tb])
                offset = int(cp.slot_offsets[start]) if stop > start else 0
                keys.append(cp.slot_level_a[start:stop] * levels[tb] + cp.slot_level_b[start:stop])
                blocks.append(cp.block_values[offset : offset + (stop - start) * width].reshape(-1, width))
                index += 1
        return cls(
            sizes, levels, cp.column_offsets, tuple(keys), tuple(blocks), cp.ZtXy, cp.XytXy, cp.n, cp.sum_log_weights
        )

    def __add__(self, other: ChunkSums) -> ChunkSums:
        """The sums of ``self``'s rows and ``other``'s together."""
        keys, blocks = [], []
        for keys_a, blocks_a, keys_b, blocks_b in zip(self.keys, self.blocks, other.keys, other.blocks):
            merged_keys, merged_blocks = _merge_sorted_blocks(keys_a, blocks_a, keys_b, blocks_b)
            keys.append(merged_keys)
            blocks.append(merged_blocks)
        return ChunkSums(
            self.term_sizes,
            self.term_levels,
            self.column_offsets,
            tuple(keys),
            tuple(blocks),
            self.ZtXy + other.ZtXy,
            self.XytXy + other.XytXy,
            self.n + other.n,
            self.sum_log_weights + other.sum_log_weights,
        )

    def cross_products(self) -> CrossProducts:
        """The sums as :class:`lmmfast.crossprod.CrossProducts`, blocks in the order
        :func:`lmmfast.crossprod.form_cross_products` stores them.

        Examples
        --------
        >>> from lmmfast.crossprod import form_cross_products
        >>> from lmmfast.design.random import RandomTerm
        >>> def chunk(a, b):
        ...     terms = [RandomTerm(name, ("(Intercept)",), np.array(["0", "1"]), np.array(codes), np.ones((2, 1)))
        ...              for name, codes in (("a", a), ("b", b))]
        ...     return ChunkSums.of(form_cross_products(terms, np.ones((2, 1)), np.array([1.0, 2.0])))
        >>> both = (chunk([0, 0], [1, 1]) + chunk([1, 0], [0, 1])).cross_products()
        >>> both.slot_level_a.tolist(), both.slot_level_b.tolist(), both.block_values.tolist()
        ([0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 0, 1], [3.0, 1.0, 1.0, 3.0, 1.0, 3.0])
        """
        sizes, levels = self.term_sizes, self.term_levels
        pairs = [(ta, tb) for ta in range(len(sizes)) for tb in range(ta + 1)]
        counts = np.array([len(keys) for keys in self.keys], dtype=np.int64)
        slot_term_a = np.repeat(np.array([ta for ta, _ in pairs], dtype=np.int64), counts)
        slot_term_b = np.repeat(np.array([tb for _, tb in pairs], dtype=np.int64), counts)
        within = np.repeat(levels[[tb for _, tb in pairs]], counts)
        keys = np.concatenate(self.keys) if self.keys else np.empty(0, dtype=np.int64)
        block_sizes = sizes[slot_term_a] * sizes[slot_term_b]
        return CrossProducts(
            term_sizes=sizes,
            term_levels=levels,
            column_offsets=self.column_offsets,
            slot_term_a=slot_term_a,
            slot_term_b=slot_term_b,
            slot_level_a=keys // within,
            slot_level_b=keys % within,
            slot_offsets=np.concatenate([[0], np.cumsum(block_sizes)[:-1]]).astype(np.int64),
            block_values=np.concatenate([blocks.ravel() for blocks in self.blocks]),
            ZtXy=self.ZtXy,
            XytXy=self.XytXy,
            n=self.n,
            sum_log_weights=self.sum_log_weights,
        )
