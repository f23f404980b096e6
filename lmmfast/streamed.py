"""Models of data read in chunks (Parquet, Arrow datasets, Dask DataFrames): two passes over
the rows, then the one fit path.

The first pass (:mod:`lmmfast.design.scan`) finds what encoding a chunk needs from all of
them: the levels of every grouping factor and categorical predictor, the number of complete
rows, the columns' kinds and means. The second builds each chunk's model matrices with
those levels and forms their cross-products, summed pairwise
(:class:`lmmfast.chunk_sums.ChunkSums`). Everything the optimiser needs is then in
memory, and none of the rows: the fit is the in-memory fit of the same cross-products, equal
to it up to the order of the sums.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.chunk_sums import ChunkSums
from lmmfast.control import Control, control_with
from lmmfast.crossprod import form_cross_products
from lmmfast.design import FixedDesign, ModelFrame, RandomTerm, build_fixed_design, build_random_terms
from lmmfast.design.amalgamate import amalgamate
from lmmfast.design.coding import resolve_codings
from lmmfast.design.data import check_columns, complete_cases
from lmmfast.design.encoding import DesignEncoding
from lmmfast.design.fixed import check_not_constant, independent_gram_columns
from lmmfast.design.newdata import column_of
from lmmfast.design.random import Grouping, check_term_sizes
from lmmfast.design.scan import CATEGORICAL, DataScan, add_scans, as_categories, scan_chunk
from lmmfast.design.source import ChunkedData, chunked_data
from lmmfast.design.variables import required_columns
from lmmfast.design.weights import prior_weights
from lmmfast.errors import ArgumentError, DataError, FormulaError
from lmmfast.formula import ModelFormula
from lmmfast.formula.contrasts import with_contrasts
from lmmfast.prepare import PreparedModel, Streamed, assemble, check_enough_rows, parse_linear
from lmmfast.progress import AUTO_PROGRESS_SECONDS
from lmmfast.validation import check_bool


@dataclasses.dataclass(frozen=True)
class ChunkRecipe:
    """How every chunk's design is built: the same for all of them, sent to each worker.

    Attributes
    ----------
    model : ModelFormula
        Contrast codings applied.
    wanted : list of str
        The columns the model uses.
    categories : dict
        Categorical column → its whole-data categorical type.
    groupings : dict
        Grouping columns → their whole-data :class:`lmmfast.design.random.Grouping`.
    names : tuple of str
        X's columns (all of them, aliased ones included).
    weights : str or None
        The weights column.
    merge_terms : bool
    """

    model: ModelFormula
    wanted: list[str]
    categories: Mapping[str, pd.CategoricalDtype]
    groupings: Mapping[tuple[str, ...], Grouping]
    names: tuple[str, ...]
    weights: str | None
    merge_terms: bool

    def design(self, frame: pd.DataFrame) -> tuple[FixedDesign, list[RandomTerm]]:
        """X, y and the random-effects terms of a chunk's complete rows (categorical
        columns already cast)."""
        fixed = build_fixed_design(frame, self.model.response, self.model.fixed, whole=False)
        if fixed.names != self.names:
            raise DataError(
                f"A chunk of the data gives the fixed-effects columns {list(fixed.names)}, where the model has "
                f"{list(self.names)}; the data changed while the model was being fitted."
            )
        return fixed, build_random_terms(frame, self.model.random, groupings=self.groupings)


@dataclasses.dataclass(frozen=True)
class ChunkProducts:
    """A chunk's cross-products (X's columns all kept) and the range of its response."""

    sums: ChunkSums
    low: float
    high: float
    binary: bool


def chunk_products(frame: pd.DataFrame, recipe: ChunkRecipe) -> ChunkProducts | None:
    """The cross-products of one chunk's complete rows (None where it has none)."""
    complete, _ = complete_cases(frame, recipe.wanted)
    if len(complete) == 0:
        return None
    complete = as_categories(complete, recipe.categories)
    fixed, terms = recipe.design(complete)
    weights = None
    if recipe.weights is not None:
        weights, _ = prior_weights(recipe.weights, ModelFrame(complete, np.empty(0, dtype=np.int64), len(complete)))
    engine = amalgamate(terms, merge=recipe.merge_terms)
    y = fixed.y
    return ChunkProducts(
        ChunkSums.of(form_cross_products(engine.terms, fixed.X, y, weights)),
        float(np.min(y)),
        float(np.max(y)),
        bool(np.all((y == 0.0) | (y == 1.0))),
    )


def add_chunk_products(first: ChunkProducts | None, second: ChunkProducts | None) -> ChunkProducts | None:
    """Two chunks' :class:`ChunkProducts` together (either may be None: no complete rows)."""
    if first is None or second is None:
        return first if second is None else second
    return ChunkProducts(
        first.sums + second.sums,
        min(first.low, second.low),
        max(first.high, second.high),
        first.binary and second.binary,
    )


def _check_streamable(fixed: FixedDesign, terms: Sequence[RandomTerm], kinds: Mapping[str, tuple[str, str]]) -> None:
    """Raise a :class:`FormulaError` for what chunks cannot encode alike: transforms whose
    state comes from the whole column (``scale(x)``, ``center(x)``, ``poly(x, 2)``), and
    numeric columns read as categories (``C(x)``)."""
    specs = [("the fixed part", fixed.spec), *((f"the random term on {t.group}", t.spec) for t in terms)]
    for where, spec in specs:
        stateful = [str(name) for name in getattr(spec, "transform_state", {})]
        if stateful:
            raise FormulaError(
                f"{stateful[0]} in {where} takes its state (a mean, a scale, a basis) from the whole column, "
                "which data read in chunks do not give at once; compute the transformed column where the data "
                "are written, or fit the data in memory."
            )
        for expression, (kind, _) in getattr(spec, "encoder_state", {}).items():
            column = column_of(expression, kinds.keys())
            if str(getattr(kind, "value", kind)) == "categorical" and column and kinds[column][0] != CATEGORICAL:
                raise FormulaError(
                    f"{expression} in {where} reads the {kinds[column][0]} column {column!r} as categories, whose "
                    "levels data read in chunks give only at the end; store the column as text (strings) "
                    "where the data are written."
                )


@contextlib.contextmanager
def _pass_progress(source: ChunkedData, progress: bool | None, what: str) -> Iterator[Callable[[int], object]]:
    """A bar of the rows a pass has read: always (True), never (False), or once the pass
    has taken ``AUTO_PROGRESS_SECONDS`` (None); none where a cluster reads the rows."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=source.row_count(),
        desc=what,
        unit=" rows",
        unit_scale=True,
        leave=False,
        disable=progress is False,
        delay=0.0 if progress else AUTO_PROGRESS_SECONDS,
    )
    try:
        yield bar.update
    finally:
        bar.close()


def prepare_streamed(
    formula: str,
    data: object,
    *,
    reml: bool = True,
    weights: str | Sequence[float] | np.ndarray | None = None,
    control: Control | None = None,
    contrasts: Mapping[str, Any] | None = None,
    client: Any = None,
    progress: bool | None = None,
) -> PreparedModel:
    """:func:`lmmfast.prepare.prepare` for data read in chunks (a Parquet file or dataset, an
    Arrow dataset, a Dask DataFrame): two passes over the data, after which the model holds
    their cross-products and none of their rows. With a Dask ``client``, the passes run on
    its workers. ``progress`` shows the rows each pass has read, as :func:`lmmfast.lmm`'s
    bar (None: once a pass turns out slow).

    Categorical columns (text) take their levels sorted, as R's ``factor``; ``weights`` is a
    column's name.

    Examples
    --------
    >>> import lmmfast, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleepstudy.parquet"
    >>> lmmfast.datasets.load("sleepstudy").to_parquet(path)
    >>> prepared = prepare_streamed("Reaction ~ Days + (Days | Subject)", path)
    >>> prepared.objective.cross_products.n, prepared.has_rows
    (180, False)
    """
    reml = check_bool("reml", reml)
    control = control_with(control)
    if weights is not None and not isinstance(weights, str):
        raise ArgumentError(
            "weights must be a column's name for data read in chunks (an array cannot be matched to their rows)."
        )
    source = chunked_data(data, client)
    model = parse_linear(formula)
    available = source.column_names()
    wanted = required_columns(model, available)
    if weights is not None and weights not in wanted:
        wanted.append(weights)
    wanted = check_columns(available, wanted)
    factors = list(dict.fromkeys(spec.factors for spec in model.random))
    if client is not None:
        progress = False  # the workers read the rows; Dask's own dashboard shows them
    with _pass_progress(source, progress, "levels (pass 1 of 2)") as done:
        scan: DataScan = source.map_sum(
            wanted, functools.partial(scan_chunk, wanted=wanted, groupings=factors), add_scans, client, done
        )
    if scan.rows == 0:
        raise DataError(f"{source.name} has no rows.")
    if scan.complete == 0:
        raise DataError(
            f"Every row of {source.name} misses a value in a column the model uses; no complete row is left."
        )
    skeleton = scan.skeleton()
    model = with_contrasts(model, resolve_codings(contrasts, model, skeleton))
    groupings = {key: Grouping.of(key, scan.distinct[key]) for key in factors}
    fixed_all = build_fixed_design(skeleton, model.response, model.fixed, whole=False)
    skeleton_terms = build_random_terms(skeleton, model.random, groupings=groupings)
    _check_streamable(fixed_all, skeleton_terms, scan.kinds)
    check_term_sizes(skeleton_terms, model.random, scan.complete)
    recipe = ChunkRecipe(model, wanted, scan.categories(), groupings, fixed_all.names, weights, control.merge_terms)
    with _pass_progress(source, progress, "cross-products (pass 2 of 2)") as done:
        total = source.map_sum(
            wanted, functools.partial(chunk_products, recipe=recipe), add_chunk_products, client, done
        )
    if total is None:  # every chunk was empty, which the scan has ruled out
        raise DataError(f"{source.name} changed while the model was being fitted: its complete rows are gone.")
    check_not_constant(model.response, total.low, total.high)
    cross_products = total.sums.cross_products()
    if not (np.all(np.isfinite(cross_products.ZtXy)) and np.all(np.isfinite(cross_products.XytXy))):
        raise DataError(
            "The cross-products of the data overflow double precision (values near 1e154 or beyond); "
            "rescale the response and predictors, e.g. to other units."
        )
    kept = independent_gram_columns(cross_products.XytXy[:-1, :-1])
    if len(kept) < len(fixed_all.names):
        cross_products = cross_products.with_fixed_columns(kept.tolist())
    check_enough_rows(cross_products.n, len(kept))
    fixed = FixedDesign(
        y=np.empty(0),
        X=np.empty((0, len(kept))),
        names=tuple(fixed_all.names[j] for j in kept),
        dropped=tuple(name for j, name in enumerate(fixed_all.names) if j not in set(kept.tolist())),
        spec=fixed_all.spec,
        kept=tuple(int(j) for j in kept),
    )
    terms = [
        dataclasses.replace(t, codes=np.empty(0, dtype=np.int64), values=np.empty((0, t.k))) for t in skeleton_terms
    ]
    frame_info = ModelFrame(frame=skeleton.iloc[:0], dropped_rows=scan.dropped, n_input_rows=scan.rows)
    encoding = DesignEncoding(
        formula=model,
        fixed_spec=fixed.spec,
        kept=fixed.kept,
        terms=tuple(term.encoding for term in terms),
        column_kinds=dict(scan.kinds),
        numeric_means=scan.numeric_means(),
    )
    return assemble(
        model,
        frame_info,
        fixed,
        terms,
        amalgamate(terms, merge=control.merge_terms),
        cross_products,
        reml=reml,
        control=control,
        weights=(None, weights),
        data_name=source.name,
        encoding=encoding,
        streamed=Streamed(source=source, binary_response=total.binary),
    )
