"""Where the blocked factor's numbers sit: runs of positions in the cross-products' values,
and the bands of Λ₂ in the packed templates (:mod:`lmmfast.factor.blocked`)."""

from __future__ import annotations

import numpy as np


def run_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[i] : starts[i] + lengths[i]`` for every i, concatenated.

    Examples
    --------
    >>> run_index(np.array([0, 5]), np.array([2, 1])).tolist()
    [0, 1, 5]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and np.all(lengths == lengths[0]):  # one width (every term scalar, say)
        return (np.asarray(starts, dtype=np.int64)[:, None] + np.arange(lengths[0])).ravel()
    run_starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(
        np.asarray(starts, dtype=np.int64) - run_starts, lengths
    )


def band_positions(
    sizes: np.ndarray, template_offsets: np.ndarray, col_term: np.ndarray, col_index: np.ndarray
) -> np.ndarray:
    """Where in the packed templates each band of Λ₂ sits: Λ₂[c + d, c] is
    ``templates[positions[d, c]]``, or 0 where ``positions[d, c]`` is −1.

    Λ₂ is block-diagonal with a lower-triangular k×k template per level, so it is banded:
    column c (index j within its level's block) has entries T[j + d, j] for j + d < k only.

    Examples
    --------
    >>> band_positions(np.array([1, 2]), np.array([0, 1]), np.array([1, 1]), np.array([0, 1])).tolist()
    [[1, 4], [3, -1]]
    """
    width = int(np.max(sizes[col_term], initial=1))
    k = sizes[col_term]
    d = np.arange(width)[:, None]
    inside = col_index[None, :] + d < k[None, :]
    positions = template_offsets[col_term][None, :] + (col_index[None, :] + d) * k[None, :] + col_index[None, :]
    return np.where(inside, positions, -1).astype(np.int64)
