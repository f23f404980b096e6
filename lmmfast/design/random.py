"""Random-effects terms: grouping codes, per-row term columns, and lme4's term order.

A term is stored as integer level codes (one per row) and a dense ``n × k`` matrix of the
term's columns; together they *are* the sparse CSC block of Z (column ``level·k + j``), which
:func:`RandomTerm.z_block` materialises when a caller wants it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic import model_matrix

from lmmfast.design.encoding import TermEncoding, level_labels
from lmmfast.design.fixed import MATRIX_OUTPUT, intercept_spec
from lmmfast.errors import DataError, FormulaError, ModelError
from lmmfast.formula import RandomTermSpec
from lmmfast.formula.cache import parsed
from lmmfast.formula.contrasts import plain_name


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term with its data.

    Attributes
    ----------
    group : str
        The grouping factor's name (``"Subject"``, ``"Machine:Worker"``).
    columns : tuple of str
        Names of the term's columns (lme4's ``"(Intercept)"`` for the intercept).
    levels : numpy.ndarray of str
        The factor's levels, in R's order.
    codes : numpy.ndarray of int64, shape (n,)
        Level index of every row.
    values : numpy.ndarray, shape (n, k)
        The term's columns per row.
    factors : tuple of str
        The grouping columns (``("Machine", "Worker")`` for ``Machine:Worker``).
    spec : formulaic.ModelSpec or None
        How the term's columns were built, to build them again for new data.
    column_index : tuple of int
        Which of ``spec``'s columns this term holds (a ``||`` term holds one).
    expr : str
        The expression ``spec`` was learnt from (the left of the term's bar).
    """

    group: str
    columns: tuple[str, ...]
    levels: np.ndarray
    codes: np.ndarray
    values: np.ndarray
    factors: tuple[str, ...] = ()
    spec: object = None
    column_index: tuple[int, ...] = ()
    expr: str = ""

    @property
    def k(self) -> int:
        """Number of columns (random effects per level)."""
        return self.values.shape[1]

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def encoding(self) -> TermEncoding:
        """How the term is built from data, without its rows (for new data and saved fits)."""
        return TermEncoding(
            self.group, self.columns, self.levels, self.factors, self.spec, self.column_index, self.expr
        )

    def z_block(self) -> sp.csc_matrix:
        """This term's block of Z as a sparse CSC matrix of shape (n, n_levels·k)."""
        n, k = self.values.shape
        rows = np.repeat(np.arange(n), k)
        cols = (self.codes[:, None] * k + np.arange(k)[None, :]).ravel()
        return sp.csc_matrix((self.values.ravel(), (rows, cols)), shape=(n, self.n_levels * k))


@dataclass(frozen=True)
class Grouping:
    """The levels of a grouping factor (or an interaction of several) known beyond the rows
    at hand: the whole data's, found by a first pass over streamed data.

    Attributes
    ----------
    factors : tuple of str
        The grouping columns.
    index : pandas.Index or pandas.MultiIndex
        The levels' values, in R's order (sorted; for an interaction, the combinations that
        occur, the first column varying slowest).
    labels : numpy.ndarray of str
        The levels as a fit names them.
    """

    factors: tuple[str, ...]
    index: pd.Index
    labels: np.ndarray

    @classmethod
    def of(cls, factors: tuple[str, ...], values: pd.DataFrame) -> Grouping:
        """The grouping of ``values``: the distinct values (rows) of the ``factors`` columns,
        in any order and with repeats, coded as :func:`build_random_terms` codes a frame.

        Examples
        --------
        >>> Grouping.of(("g",), pd.DataFrame({"g": [3, 1, 2, 1]})).labels.tolist()
        ['1', '2', '3']
        """
        codes, labels = _factor_codes(values, factors)
        first = np.unique(codes, return_index=True)[1]
        if len(factors) == 1:
            index = pd.Index(values[factors[0]].to_numpy()[first])
        else:
            index = pd.MultiIndex.from_frame(values.loc[:, list(factors)].iloc[first])
        return cls(factors=factors, index=index, labels=labels)

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """The level of every row of ``frame``.

        Raises
        ------
        DataError
            For a value the levels do not hold (data that changed since they were read).
        """
        if len(self.factors) == 1:
            codes = self.index.get_indexer(frame[self.factors[0]])
        else:
            codes = self.index.get_indexer(pd.MultiIndex.from_frame(frame.loc[:, list(self.factors)]))
        if len(codes) and codes.min() < 0:
            raise DataError(
                f"The grouping factor {':'.join(self.factors)!r} has a level that the first pass over the data "
                "did not see; the data changed while the model was being fitted. Fit again on data that stay "
                "the same."
            )
        return codes.astype(np.int64, copy=False)


def _factor_codes(frame: pd.DataFrame, factors: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes and labels of the (interaction of the) grouping columns; levels as R orders them
    (sorted, the first column varying slowest), only the combinations that occur."""
    codes_per_column, labels_per_column = [], []
    for name in factors:
        codes, uniques = pd.factorize(frame[name], sort=True)
        codes_per_column.append(codes.astype(np.int64))
        labels_per_column.append(level_labels(uniques))
    if len(factors) == 1:
        return codes_per_column[0], labels_per_column[0]
    used, codes = np.unique(np.column_stack(codes_per_column), axis=0, return_inverse=True)
    labels = np.asarray(
        [":".join(str(labels_per_column[c][v]) for c, v in enumerate(row)) for row in used], dtype=object
    )
    return codes.reshape(-1).astype(np.int64), labels


def _term_columns(
    frame: pd.DataFrame, spec: RandomTermSpec, model_spec: object = None
) -> tuple[np.ndarray, tuple[str, ...], object]:
    if spec.expr == "1" and model_spec is None:  # a random intercept, the common term: no formulaic pass
        return np.ones((len(frame), 1)), ("(Intercept)",), intercept_spec()
    try:
        with np.errstate(all="ignore"):  # non-finite columns are reported below, in words
            if model_spec is None:
                matrix = model_matrix(parsed(spec.expr), frame, na_action="raise", output=MATRIX_OUTPUT)
            else:
                matrix = model_spec.get_model_matrix(frame, na_action="raise", output=MATRIX_OUTPUT)  # type: ignore[attr-defined]
    except Exception as exc:
        raise FormulaError(f"The random term {spec.source} could not be built from {spec.expr!r}: {exc}") from exc
    values = np.asarray(matrix, dtype=np.float64)
    if values.shape[1] == 0:
        raise FormulaError(f"The random term {spec.source} has no columns; write (1 | g) for an intercept.")
    columns = matrix.model_spec.column_names
    names = tuple("(Intercept)" if str(c) == "Intercept" else plain_name(str(c)) for c in columns)
    finite = np.isfinite(values).all(axis=0)
    if not finite.all():
        bad = names[int(np.flatnonzero(~finite)[0])]
        raise DataError(f"The random-effects column {bad!r} of {spec.source} has infinite or undefined values.")
    return values, names, matrix.model_spec


def _make_unique(names: Sequence[str]) -> list[str]:
    """R's ``make.unique``: the second ``g`` becomes ``g.1``, the third ``g.2``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            out.append(f"{name}.{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out


def build_random_terms(
    frame: pd.DataFrame,
    specs: Sequence[RandomTermSpec],
    *,
    observation_level: bool = False,
    groupings: Mapping[tuple[str, ...], Grouping] | None = None,
    model_specs: Mapping[str, object] | None = None,
) -> list[RandomTerm]:
    """Build the random-effects terms in lme4's order (decreasing number of levels, stable).

    A linear model's terms need fewer levels (and random effects) than observations, or
    their variance is confounded with the residual's; ``observation_level=True`` (a
    generalized model, which has no residual variance) allows as many as there are rows.

    ``(x || g)`` becomes one single-column term per column of ``x``'s model matrix, as lme4
    does for numeric columns (and lme4 2.0's ``diag`` for factors).

    ``groupings`` gives the levels of the grouping factors where they are known beyond
    ``frame`` (one chunk of streamed data): the terms take those levels, and the checks of
    their sizes are the caller's (:func:`check_term_sizes`, with the whole data's count).

    ``model_specs`` maps a term's expression to formulaic's model spec of it learnt from
    other data (a :class:`RandomTerm`'s), checked by the caller to fit these data
    (:func:`lmmfast.design.encoding.spec_fits`): its columns are built without learning it
    again.

    Examples
    --------
    >>> import pandas as pd
    >>> from lmmfast.formula import parse_formula
    >>> frame = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [0.0, 1, 0, 1], "g": list("aabb")})
    >>> [t.group for t in build_random_terms(frame, parse_formula("y ~ (x || g)").random)]
    ['g', 'g']
    """
    terms: list[RandomTerm] = []
    factor_cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
    # one model matrix per distinct expression: maximal models repeat theirs on every factor
    column_cache: dict[str, tuple[np.ndarray, tuple[str, ...], object]] = {}
    for spec in specs:
        if spec.factors not in factor_cache:
            if groupings is None:
                factor_cache[spec.factors] = _factor_codes(frame, spec.factors)
            else:
                grouping = groupings[spec.factors]
                factor_cache[spec.factors] = grouping.codes(frame), grouping.labels
        codes, levels = factor_cache[spec.factors]
        if spec.expr not in column_cache:
            column_cache[spec.expr] = _term_columns(frame, spec, (model_specs or {}).get(spec.expr))
        values, names, model_spec = column_cache[spec.expr]
        pieces: list[tuple[tuple[int, ...], tuple[str, ...]]]
        if spec.independent:
            pieces = [((j,), (names[j],)) for j in range(len(names))]
        else:
            pieces = [(tuple(range(len(names))), names)]
        for index, piece_names in pieces:
            terms.append(
                RandomTerm(
                    group=spec.group_name,
                    columns=piece_names,
                    levels=levels,
                    codes=codes,
                    values=np.ascontiguousarray(values[:, list(index)]),
                    factors=spec.factors,
                    spec=model_spec,
                    column_index=index,
                    expr=spec.expr,
                )
            )
    terms.sort(key=lambda t: -t.n_levels)  # list.sort is stable, as R's order()
    if groupings is None:
        check_term_sizes(terms, specs, len(frame), observation_level=observation_level)
    return terms


def check_term_sizes(
    terms: Sequence[RandomTerm], specs: Sequence[RandomTermSpec], n: int, *, observation_level: bool = False
) -> None:
    """Raise a :class:`ModelError` for a term the data cannot identify: a grouping factor of
    one level, or (in a linear model) as many levels or random effects as the ``n``
    observations.

    Examples
    --------
    >>> import pandas as pd
    >>> from lmmfast.formula import parse_formula
    >>> frame = pd.DataFrame({"y": [1.0, 2, 3, 4], "g": list("aabb")})
    >>> specs = parse_formula("y ~ (1 | g)").random
    >>> check_term_sizes(build_random_terms(frame, specs), specs, 2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lmmfast.errors.ModelError: The grouping factor 'g' in (1 | g) has 2 levels for 2 observations; ...
    """
    source: dict[tuple[str, ...], str] = {}
    for spec in specs:
        source.setdefault(spec.factors, spec.source)
    for term in terms:
        where, levels = source.get(term.factors, f"({term.group})"), term.levels
        if len(levels) < 2:
            raise ModelError(
                f"The grouping factor {term.group!r} in {where} has a single level "
                f"({levels[0]!r}); a random effect needs at least two sampled levels."
            )
        if len(levels) >= n and not (observation_level and len(levels) == n):
            raise ModelError(
                f"The grouping factor {term.group!r} in {where} has {len(levels)} levels for "
                f"{n} observations; each level needs replicate observations (levels < observations) "
                "or its variance is confounded with the residual."
            )
    for term in terms:
        if term.n_levels * term.k >= n and not observation_level:
            raise ModelError(
                f"The term ({' + '.join(term.columns)} | {term.group}) has {term.n_levels * term.k} random "
                f"effects for {n} observations; the number of random effects per term must be "
                "smaller than the number of observations. Simplify the term."
            )


def display_names(terms: Sequence[RandomTerm]) -> list[str]:
    """The names lme4 gives the terms in VarCorr (``Subject``, ``Subject.1``, ...)."""
    return _make_unique([t.group for t in terms])
