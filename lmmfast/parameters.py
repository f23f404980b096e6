"""The covariance parameters θ: their layout, bounds, start, and the Λθ templates.

θ holds, term after term, the lower triangle of each term's k×k template read column by
column (lme4's order); diagonal entries are bounded below by 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class ThetaLayout:
    """Where each term's template entries sit in θ.

    Examples
    --------
    >>> layout = ThetaLayout.from_sizes([2, 1])
    >>> layout.size, layout.lower_bounds.tolist()
    (4, [0.0, -inf, 0.0, 0.0])
    """

    sizes: tuple[int, ...]
    starts: tuple[int, ...]
    rows: np.ndarray
    cols: np.ndarray
    term_of: np.ndarray

    @classmethod
    def from_sizes(cls, sizes: Sequence[int]) -> ThetaLayout:
        rows: list[int] = []
        cols: list[int] = []
        term_of: list[int] = []
        starts: list[int] = []
        for term, k in enumerate(sizes):
            starts.append(len(rows))
            for j in range(k):
                for i in range(j, k):
                    rows.append(i)
                    cols.append(j)
                    term_of.append(term)
        return cls(
            sizes=tuple(int(k) for k in sizes),
            starts=tuple(starts),
            rows=np.asarray(rows, dtype=np.int64),
            cols=np.asarray(cols, dtype=np.int64),
            term_of=np.asarray(term_of, dtype=np.int64),
        )

    def merged(self, blocks: Sequence[tuple[int, int]], sizes: Sequence[int]) -> ThetaLayout:
        """The layout of the same θ on merged terms: the model's term t becomes the diagonal
        block of merged term ``blocks[t][0]`` starting at row ``blocks[t][1]``, and merged term
        m has ``sizes[m]`` columns. θ keeps its order (the model's, lme4's); the merged
        templates are block-diagonal, their other entries fixed at 0.

        Examples
        --------
        >>> merged = ThetaLayout.from_sizes([1, 1]).merged([(0, 0), (0, 1)], [2])
        >>> merged.template(np.array([2.0, 3.0]), 0).tolist()
        [[2.0, 0.0], [0.0, 3.0]]
        """
        first = np.asarray([row for _, row in blocks], dtype=np.int64)[self.term_of]
        term_of = np.asarray([term for term, _ in blocks], dtype=np.int64)[self.term_of]
        return ThetaLayout(
            sizes=tuple(int(k) for k in sizes),
            starts=tuple(int(np.flatnonzero(term_of == m)[0]) for m in range(len(sizes))),
            rows=self.rows + first,
            cols=self.cols + first,
            term_of=term_of,
        )

    @property
    def size(self) -> int:
        """Length of θ."""
        return len(self.rows)

    # read at every fit: worked out once, and read-only as every fit shares them
    @cached_property
    def is_diagonal(self) -> np.ndarray:
        """Mask of θ entries on a template's diagonal (read-only)."""
        mask = self.rows == self.cols
        mask.setflags(write=False)
        return mask

    @cached_property
    def lower_bounds(self) -> np.ndarray:
        """0 on the diagonal, −∞ elsewhere (read-only)."""
        bounds = np.where(self.is_diagonal, 0.0, -np.inf)
        bounds.setflags(write=False)
        return bounds

    @property
    def start(self) -> np.ndarray:
        """lme4's starting point: identity templates."""
        return np.where(self.is_diagonal, 1.0, 0.0)

    @cached_property
    def template_offsets(self) -> np.ndarray:
        """Start of each term's k×k template in the packed array of :meth:`packed_templates`."""
        squares = np.asarray([k * k for k in self.sizes], dtype=np.int64)
        return np.concatenate([[0], np.cumsum(squares)[:-1]]).astype(np.int64)

    # the layout is fixed for a fit and these are read at every evaluation: worked out once
    @cached_property
    def _packed_positions(self) -> np.ndarray:
        """Where each θ entry sits in the packed templates."""
        sizes = np.asarray(self.sizes, dtype=np.int64)
        return self.template_offsets[self.term_of] + self.rows * sizes[self.term_of] + self.cols

    @cached_property
    def _template_positions(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per term, which θ entries are its own and where they sit in its row-major k×k
        template (a merged term's entries need not be contiguous in θ)."""
        local = self.rows * np.asarray(self.sizes, dtype=np.int64)[self.term_of] + self.cols
        return tuple(
            (np.flatnonzero(self.term_of == term), local[self.term_of == term]) for term in range(len(self.sizes))
        )

    def packed_templates(self, theta: np.ndarray) -> np.ndarray:
        """All templates, each a row-major k×k lower-triangular block, concatenated."""
        packed = np.zeros(sum(k * k for k in self.sizes), dtype=np.float64)
        packed[self._packed_positions] = theta
        return packed

    def canonical(self, theta: np.ndarray) -> np.ndarray:
        """θ with every template column whose diagonal is negative negated.

        The model depends on each template T only through TT', which does not change when a
        column of T changes sign; this maps any θ to the equivalent one inside lme4's bounds.

        Examples
        --------
        >>> ThetaLayout.from_sizes([2]).canonical(np.array([-1.0, 2.0, 3.0])).tolist()
        [1.0, -2.0, 3.0]
        """
        out = np.array(theta, dtype=np.float64, copy=True)
        for diagonal, in_column in self._template_columns:
            if out[diagonal] < 0.0:
                out[in_column] = -out[in_column]
        return out

    @cached_property
    def _template_columns(self) -> tuple[tuple[int, np.ndarray], ...]:
        """Per template column: the θ entry on its diagonal and all its θ entries."""
        columns = []
        for term, k in enumerate(self.sizes):
            for column in range(k):
                in_column = (self.term_of == term) & (self.cols == column)
                diagonal = int(np.flatnonzero(in_column & (self.rows == column))[0])
                columns.append((diagonal, np.flatnonzero(in_column)))
        return tuple(columns)

    def template(self, theta: np.ndarray, term: int) -> np.ndarray:
        """The k×k lower-triangular template of one term."""
        k = self.sizes[term]
        entries, positions = self._template_positions[term]
        out = np.zeros(k * k)
        out[positions] = theta[entries]
        return out.reshape(k, k)

    def names(self, groups: Sequence[str], columns: Sequence[Sequence[str]]) -> list[str]:
        """lme4's θ names: ``Subject.(Intercept)``, ``Subject.Days.(Intercept)``, ..."""
        out = []
        for term, i, j in zip(self.term_of, self.rows, self.cols):
            names = columns[term]
            if i == j:
                out.append(f"{groups[term]}.{names[i]}")
            else:
                out.append(f"{groups[term]}.{names[i]}.{names[j]}")
        return out
