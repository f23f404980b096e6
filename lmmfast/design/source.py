"""Data read in chunks: a Parquet file or dataset, an Arrow dataset, or a Dask DataFrame.

A model of such data never holds its rows. Each pass over them maps a function over the
chunks (pandas frames of the columns the model uses) and sums the results pairwise, in the
order of the chunks: locally one chunk at a time, or on a Dask cluster one task per
partition. The pairwise sum keeps O(log chunks) partial results, and its rounding grows
with the logarithm of the number of chunks rather than with the number.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from lmmfast.datasets import names
from lmmfast.errors import ArgumentError, DataError

#: Rows per chunk read from Parquet or Arrow (batches are gathered up to this many): large
#: enough that per-chunk work (formulaic, pandas) is a small part of the pass, small enough
#: that a chunk of a few dozen columns takes a few hundred MB.
CHUNK_ROWS = 1_000_000

Summed = TypeVar("Summed")


def _is_dask_frame(data: object) -> bool:
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(data, "to_delayed")


def _is_arrow_dataset(data: object) -> bool:
    return type(data).__module__.startswith("pyarrow._dataset") and hasattr(data, "to_batches")


def is_chunked(data: object) -> bool:
    """Whether ``data`` is read in chunks: a path (to Parquet), an Arrow dataset or a Dask
    DataFrame, as opposed to a frame in memory.

    Examples
    --------
    >>> is_chunked({"y": [1.0]}), is_chunked("trials.parquet")
    (False, True)
    """
    return isinstance(data, (str, os.PathLike)) or _is_arrow_dataset(data) or _is_dask_frame(data)


def require_in_memory(data: object, function: str) -> None:
    """Raise a :class:`DataError` for data read in chunks given to ``function``, which needs
    the rows in memory."""
    if is_chunked(data):
        raise DataError(
            f"{function} needs its data in memory (a pandas or polars DataFrame, a pyarrow Table or a dict of "
            "arrays); only lmmfast.lmm fits data read in chunks (Parquet, Arrow datasets, Dask DataFrames), and "
            "lmmfast.streamed.prepare_streamed prepares them. Load them first, e.g. pandas.read_parquet(path)."
        )


@dataclass(frozen=True)
class ChunkedData:
    """Data read in chunks, and how.

    Attributes
    ----------
    data : pyarrow.dataset.Dataset or dask.dataframe.DataFrame
    name : str
        What a summary calls it: the path, or ``"a Dask DataFrame"``.
    """

    data: Any
    name: str

    @property
    def is_dask(self) -> bool:
        """Whether the chunks are a Dask DataFrame's partitions."""
        return _is_dask_frame(self.data)

    def row_count(self) -> int | None:
        """The number of rows where the data say it without a pass (Parquet's metadata),
        else None (a Dask DataFrame)."""
        return None if self.is_dask else int(self.data.count_rows())

    def column_names(self) -> list[str]:
        """The names of the data's columns."""
        if self.is_dask:
            return [str(c) for c in self.data.columns]
        return [str(c) for c in self.data.schema.names]

    def frames(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """The ``columns`` of the data, chunk after chunk (Parquet and Arrow: about
        :data:`CHUNK_ROWS` rows each; Dask: one partition each)."""
        if self.is_dask:
            for partition in self.data[columns].to_delayed():
                yield plain_frame(partition.compute())
            return
        import pyarrow as pa

        batches: list[Any] = []
        rows = 0
        for batch in self.data.to_batches(columns=columns, batch_size=CHUNK_ROWS):
            batches.append(batch)
            rows += batch.num_rows
            if rows >= CHUNK_ROWS:
                yield plain_frame(pa.Table.from_batches(batches).to_pandas())
                batches, rows = [], 0
        if batches:
            yield plain_frame(pa.Table.from_batches(batches).to_pandas())

    def map_sum(
        self,
        columns: list[str],
        function: Callable[[pd.DataFrame], Summed],
        add: Callable[[Summed, Summed], Summed],
        client: Any = None,
        on_chunk: Callable[[int], object] | None = None,
    ) -> Summed:
        """``function`` of every chunk of ``columns``, summed pairwise by ``add`` in the
        chunks' order; with a Dask ``client`` (Dask data only), each partition's result is
        computed on the cluster's workers and the sums too. Read here, each chunk's number
        of rows is passed to ``on_chunk`` once it is done (for a progress bar)."""
        if client is None or not self.is_dask:

            def results() -> Iterator[Summed]:
                for frame in self.frames(columns):
                    result = function(frame)
                    if on_chunk is not None:
                        on_chunk(len(frame))
                    yield result

            return pairwise_sum(results(), add)
        import dask

        mapped = dask.delayed(_on_partition, pure=True)
        added = dask.delayed(add, pure=True)
        partitions = self.data[columns].to_delayed()
        total = pairwise_sum((mapped(function, partition) for partition in partitions), added)
        return client.compute(total).result()


def _on_partition(function: Callable[[pd.DataFrame], Summed], partition: pd.DataFrame) -> Summed:
    return function(plain_frame(partition))


def plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with categorical columns (Arrow's dictionary columns, whose categories
    differ from chunk to chunk) as their plain values, and pandas' string and Arrow-backed
    columns (Dask's default for text) as NumPy's, as a data frame in memory has them."""
    converted = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            converted[name] = frame[name].astype(dtype.categories.dtype)
        elif isinstance(dtype, pd.StringDtype):
            converted[name] = frame[name].astype(object).where(frame[name].notna(), None)
        elif isinstance(dtype, pd.ArrowDtype):
            converted[name] = frame[name].to_numpy(dtype=dtype.numpy_dtype, na_value=None)
    if not converted:
        return frame
    return frame.assign(**{str(k): v for k, v in converted.items()})


def pairwise_sum(items: Iterable[Summed], add: Callable[[Summed, Summed], Summed]) -> Summed:
    """The sum of ``items`` in their order, as a binary tree: item 2i is added to item 2i+1,
    then those sums in pairs, and so on; what is left over joins from the right. It holds at
    most one partial sum per level.

    Examples
    --------
    >>> pairwise_sum(["a", "b", "c", "d", "e"], lambda x, y: f"({x}{y})")
    '(((ab)(cd))e)'
    """
    stack: list[tuple[int, Summed]] = []
    for item in items:
        level, value = 0, item
        while stack and stack[-1][0] == level:
            value = add(stack.pop()[1], value)
            level += 1
        stack.append((level, value))
    if not stack:
        raise DataError("The data have no chunks (an empty dataset or a Dask DataFrame without partitions).")
    total = stack.pop()[1]
    while stack:
        total = add(stack.pop()[1], total)
    return total


def chunked_data(data: object, client: Any = None) -> ChunkedData:
    """``data`` (for which :func:`is_chunked` holds) ready to be read in chunks; with a Dask
    ``client``, a Parquet path or Arrow dataset is read by the cluster's workers (as a Dask
    DataFrame of its files). A path may be a URI (``s3://...``) where pyarrow, or Dask with
    a client, has its filesystem.

    Raises
    ------
    DataError
        For a path that does not exist or is not Parquet.
    """
    if _is_dask_frame(data):
        return ChunkedData(data, "a Dask DataFrame")
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if client is not None:
            return _dask_of(path, path)
        if "://" not in path and not os.path.exists(path):  # a URI's filesystem is pyarrow's to check
            bundled = f" For the bundled dataset, pass lmmfast.datasets.load({path!r})." if path in names() else ""
            raise DataError(
                f"data is the path {path!r}, which does not exist; give a Parquet file or a directory of Parquet "
                f"files (a dataset), or a data frame.{bundled}"
            )
        import pyarrow.dataset as ds

        try:
            dataset = ds.dataset(path, format="parquet")
        except Exception as exc:  # pyarrow raises several types for files it cannot read
            raise DataError(f"data {path!r} could not be read as Parquet: {exc}") from exc
        return ChunkedData(dataset, path)
    if _is_arrow_dataset(data):
        files = getattr(data, "files", None)
        if client is not None and files:
            return _dask_of(list(files), "an Arrow dataset")
        return ChunkedData(data, "an Arrow dataset")
    raise ArgumentError(f"Data of type {type(data).__name__} cannot be read in chunks.")


def _dask_of(files: str | list[str], name: str) -> ChunkedData:
    """Parquet ``files`` (a path, a URI, or a list of them) as a Dask DataFrame, for a cluster."""
    import dask.dataframe as dd

    try:
        return ChunkedData(dd.read_parquet(files), name)
    except Exception as exc:  # Dask and its filesystems raise several types for what they cannot read
        raise DataError(f"data {name!r} could not be read as Parquet by Dask: {exc}") from exc
