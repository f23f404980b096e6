"""Terms on one grouping factor merged into one term, before the cross-products are formed.

``(1 + S + P || subj)`` is, as in lme4, the three terms ``(1 | subj) + (0 + S | subj) +
(0 + P | subj)``, each with its own θ. Λ'Z'ZΛ + I is the same matrix whether they are three
terms or one term with a block-diagonal template, but one term is far cheaper to factor: on
the blocked path all but the first term land in the dense block, so kb07's zero-correlation
model (eight scalar terms per factor) has a dense block of 648 random effects as separate
terms and of 256 merged. This is MixedModels.jl's ``amalgamate``.

The model keeps its terms (names, θ's order, one result per lme4 term); the engine — the
cross-products, the factor and the criterion — works on the merged ones, and
:meth:`lmmfast.parameters.ThetaLayout.merged` maps θ into their templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmmfast.design.random import RandomTerm


@dataclass(frozen=True)
class EngineTerms:
    """The terms the engine factors, and where each of the model's terms sits in them.

    Only the grouping is stored: a merged term's columns are its pieces', put side by side
    when :attr:`terms` is read (to form cross-products), so a fit keeps no second copy of
    the random-effects columns.

    Attributes
    ----------
    model_terms : tuple of RandomTerm
        The model's terms, in lme4's order.
    groups : tuple of tuple of int
        Per engine term (the largest, in levels × columns, first), the model's terms it
        holds, in the model's order.
    """

    model_terms: tuple[RandomTerm, ...]
    groups: tuple[tuple[int, ...], ...]

    @property
    def merged(self) -> bool:
        """Whether any two of the model's terms were merged."""
        return len(self.groups) < len(self.model_terms)

    @property
    def terms(self) -> tuple[RandomTerm, ...]:
        """The engine's terms (the model's own where a group holds one)."""
        return tuple(_merged_term([self.model_terms[t] for t in group]) for group in self.groups)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Columns per engine term."""
        return tuple(sum(self.model_terms[t].k for t in group) for group in self.groups)

    @property
    def blocks(self) -> tuple[tuple[int, int], ...]:
        """Per model term, its engine term and its first column there."""
        out: dict[int, tuple[int, int]] = {}
        for engine, group in enumerate(self.groups):
            first = 0
            for t in group:
                out[t] = (engine, first)
                first += self.model_terms[t].k
        return tuple(out[t] for t in range(len(self.model_terms)))

    def model_modes(self, b: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
        """Per model term, its rows of ``b`` (engine order, engine terms starting at
        ``offsets``) as an array (levels, k)."""
        sizes = self.sizes
        out = []
        for (engine, first), term in zip(self.blocks, self.model_terms):
            start = int(offsets[engine])
            rows = b[start : start + term.n_levels * sizes[engine]].reshape(term.n_levels, sizes[engine])
            out.append(rows[:, first : first + term.k])
        return out


def _merged_term(members: Sequence[RandomTerm]) -> RandomTerm:
    if len(members) == 1:
        return members[0]
    lead = members[0]
    return RandomTerm(
        group=lead.group,
        columns=tuple(column for member in members for column in member.columns),
        levels=lead.levels,
        codes=lead.codes,
        values=np.ascontiguousarray(np.hstack([member.values for member in members])),
        factors=lead.factors,
    )


def amalgamate(terms: Sequence[RandomTerm], merge: bool = True) -> EngineTerms:
    """Merge the terms that share a grouping factor (the same grouping columns, hence the
    same levels and the same level in every row) into one term each.

    Merged terms are ordered by their numbers of random effects, largest first (ties keep
    the model's order); their columns are their pieces' in the model's order. Without
    ``merge``, or where no two terms share a factor, the engine's terms are the model's.

    Examples
    --------
    >>> codes, levels = np.array([0, 0, 1]), np.array(["a", "b"])
    >>> terms = [RandomTerm("g", ("(Intercept)",), levels, codes, np.ones((3, 1)), ("g",)),
    ...          RandomTerm("g", ("x",), levels, codes, np.array([[1.0], [2.0], [3.0]]), ("g",))]
    >>> engine = amalgamate(terms)
    >>> engine.terms[0].columns, engine.blocks
    (('(Intercept)', 'x'), ((0, 0), (0, 1)))
    """
    groups: list[list[int]] = []
    seen: dict[tuple[str, ...], int] = {}
    for index, term in enumerate(terms):
        key = term.factors if merge and term.factors else (f"#{index}",)
        if key not in seen:
            seen[key] = len(groups)
            groups.append([])
        groups[seen[key]].append(index)
    if len(groups) == len(terms):
        return EngineTerms(model_terms=tuple(terms), groups=tuple((i,) for i in range(len(terms))))
    sizes = [sum(terms[t].k for t in group) for group in groups]
    by_size = sorted(range(len(groups)), key=lambda g: -sizes[g] * terms[groups[g][0]].n_levels)
    return EngineTerms(model_terms=tuple(terms), groups=tuple(tuple(groups[g]) for g in by_size))
