"""The first pass over data read in chunks: what encoding a chunk needs from all of them.

A chunk's model matrices must be built with the whole data's levels (of every grouping
factor and every categorical predictor), and a model's checks need the whole data's counts.
:func:`scan_chunk` reads these off one chunk, :func:`add_scans` joins two chunks' scans (in
their order), and :meth:`DataScan.categories` and :meth:`DataScan.skeleton` turn the total
into the categorical types every chunk is cast to and a small frame that formulaic builds
the model's specs from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmfast.design.data import complete_cases
from lmmfast.design.encoding import column_kinds
from lmmfast.errors import DataError

#: Complete rows a scan keeps from the data's start, for :meth:`DataScan.skeleton`.
HEAD_ROWS = 64

#: The kind of a column whose values formulaic reads as categories.
CATEGORICAL = "text or categorical"


@dataclass(frozen=True)
class DataScan:
    """What a pass over (some of) the data found.

    Attributes
    ----------
    rows : int
        Rows read.
    dropped : numpy.ndarray
        Positions of the rows that miss a value the model uses.
    kinds : dict
        Column → ``(kind, dtype)`` (:func:`lmmfast.design.encoding.column_kinds`).
    distinct : dict
        Each grouping (a tuple of columns), and each categorical column (a 1-tuple) →
        the distinct combinations of their values.
    sums : dict
        Each numeric column's sum over the complete rows.
    head : pandas.DataFrame
        The first complete rows (up to :data:`HEAD_ROWS`).
    """

    rows: int
    dropped: np.ndarray
    kinds: Mapping[str, tuple[str, str]]
    distinct: Mapping[tuple[str, ...], pd.DataFrame]
    sums: Mapping[str, float]
    head: pd.DataFrame

    @property
    def complete(self) -> int:
        """The number of complete rows."""
        return self.rows - len(self.dropped)

    def categories(self) -> dict[str, pd.CategoricalDtype]:
        """The categorical type of every categorical column: its levels sorted (as R's
        ``factor`` and formulaic order them)."""
        return {
            name: pd.CategoricalDtype(pd.factorize(self.distinct[(name,)][name], sort=True)[1])
            for name, (kind, _) in self.kinds.items()
            if kind == CATEGORICAL
        }

    def numeric_means(self) -> dict[str, float]:
        """The mean of every numeric column over the complete rows."""
        return {name: total / self.complete for name, total in self.sums.items()}

    def skeleton(self) -> pd.DataFrame:
        """The first complete rows with the categorical columns cast to
        :meth:`categories`: a frame that formulaic builds the whole data's specs from."""
        return as_categories(self.head, self.categories())


def as_categories(frame: pd.DataFrame, categories: Mapping[str, pd.CategoricalDtype]) -> pd.DataFrame:
    """``frame`` with its categorical columns cast to the whole data's ``categories``."""
    if not categories:
        return frame
    return frame.assign(**{name: frame[name].astype(dtype) for name, dtype in categories.items()})


def scan_chunk(frame: pd.DataFrame, wanted: Sequence[str], groupings: Sequence[tuple[str, ...]]) -> DataScan:
    """The scan of one chunk: ``wanted`` are the columns the model uses, ``groupings`` its
    grouping factors.

    Examples
    --------
    >>> chunk = pd.DataFrame({"y": [1.0, None, 3.0], "g": ["b", "a", "b"]})
    >>> scan = scan_chunk(chunk, ["y", "g"], [("g",)])
    >>> scan.complete, scan.dropped.tolist(), scan.distinct[("g",)]["g"].tolist()
    (2, [1], ['b'])
    """
    complete, dropped = complete_cases(frame, list(wanted))
    if len(complete) == 0:
        return DataScan(len(frame), dropped, {}, {}, {}, complete)
    kinds = column_kinds(complete)
    keys = list(dict.fromkeys([*groupings, *((name,) for name, (kind, _) in kinds.items() if kind == CATEGORICAL)]))
    distinct = {key: complete.loc[:, list(key)].drop_duplicates(ignore_index=True) for key in keys}
    sums = {name: float(complete[name].sum()) for name, (kind, _) in kinds.items() if kind == "numeric"}
    return DataScan(len(frame), dropped, kinds, distinct, sums, complete.iloc[:HEAD_ROWS].reset_index(drop=True))


def add_scans(first: DataScan, second: DataScan) -> DataScan:
    """The scan of ``first``'s rows followed by ``second``'s.

    Raises
    ------
    DataError
        For a column whose kind differs between the two (numbers in one chunk, text in
        another).
    """
    for name in first.kinds.keys() & second.kinds.keys():
        (was, dtype), (now, other) = first.kinds[name], second.kinds[name]
        if was != now and {was, now} != {"numeric", "boolean"}:
            raise DataError(
                f"Column {name!r} is {was} ({dtype}) in one part of the data and {now} ({other}) in another; "
                "give it one type throughout (convert it where it is written)."
            )
    distinct = dict(first.distinct)
    for key, values in second.distinct.items():
        distinct[key] = (
            pd.concat([distinct[key], values], ignore_index=True).drop_duplicates(ignore_index=True)
            if key in distinct
            else values
        )
    sums = dict(first.sums)
    for name, total in second.sums.items():
        sums[name] = sums.get(name, 0.0) + total
    head = first.head
    if len(head) < HEAD_ROWS and len(second.head):
        head = pd.concat([head, second.head], ignore_index=True).iloc[:HEAD_ROWS] if len(head) else second.head
    return DataScan(
        rows=first.rows + second.rows,
        dropped=np.concatenate([first.dropped, second.dropped + first.rows]),
        kinds={**second.kinds, **first.kinds},
        distinct=distinct,
        sums=sums,
        head=head,
    )
