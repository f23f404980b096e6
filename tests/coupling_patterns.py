"""Random coupling patterns and their dense equivalents, for the blocked path's kernels."""

from __future__ import annotations

import numpy as np

from lmmfast.factor.rank_update import UpdatePattern


def random_pattern(rng: np.random.Generator, k1: int, levels: int, size: int) -> tuple[UpdatePattern, np.ndarray]:
    rows = [np.sort(rng.choice(size, rng.integers(1, size // 2), replace=False)) for _ in range(levels)]
    entry_ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    pattern = UpdatePattern.build(k1, entry_ptr, np.concatenate(rows), size)
    return pattern, rng.normal(size=int(entry_ptr[-1]) * k1)


def dense_coupling(pattern: UpdatePattern, values: np.ndarray, size: int) -> np.ndarray:
    """L21 as a dense size × (levels k1) matrix."""
    k1 = pattern.k1
    levels = np.searchsorted(np.unique(pattern.level_start), pattern.level_start)
    dense = np.zeros((size, (levels.max() + 1) * k1))
    for e, (row, level) in enumerate(zip(pattern.rows, levels)):
        dense[row, level * k1 : (level + 1) * k1] = values[e * k1 : (e + 1) * k1]
    return dense


def grouped_pattern(rng: np.random.Generator, k1: int, width: int, levels: int, groups: int):
    """A pattern whose columns come in groups of ``width`` that each level touches whole."""
    size = groups * width
    rows = []
    for _ in range(levels):
        chosen = np.sort(rng.choice(groups, rng.integers(1, groups // 2 + 1), replace=False))
        rows.append((chosen[:, None] * width + np.arange(width)[None, :]).ravel())
    entry_ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    group_ptr = np.arange(0, size + 1, width)
    pattern = UpdatePattern.build(k1, entry_ptr, np.concatenate(rows), size, group_ptr)
    return pattern, rng.normal(size=int(entry_ptr[-1]) * k1), size
