"""A fingerprint of the values a model reads from a small data frame.

Two frames with equal fingerprints for a model's columns give that model the same design
(up to the chance, about 2⁻⁶⁴ per pair, that two strings of a NumPy object column share
pandas' 64-bit hash): the fingerprint covers the container's kind, the frame's length and
column names, and of each column read its name, dtype, categories (with their order) and
every value, so a change to any of them — in place or in a new frame — changes it. It is a
256-bit BLAKE2 digest of those bytes: numbers as they are stored, Arrow data (polars
DataFrames, pyarrow Tables, pandas' Arrow-backed columns) as its buffers, strings in
object columns as pandas' 64-bit hashes of each value. Where this would be slow or
uncertain it declines (None): more than :data:`FINGERPRINT_MAX_ROWS` rows, other
containers (dicts, polars LazyFrames), columns of mixed Python objects, pandas extension
dtypes other than strings and categories.

Examples
--------
>>> import pandas as pd
>>> frame = pd.DataFrame({"y": [1.0, 2.0], "g": ["a", "b"]})
>>> frame_fingerprint(frame, ["y", "g"]) == frame_fingerprint(frame.copy(), ["y", "g"])
True
>>> frame_fingerprint(frame, ["y", "g"]) == frame_fingerprint(frame.assign(g=["a", "a"]), ["y", "g"])
False
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Frames of more rows are not fingerprinted: their models are kept by the user
#: (:class:`lmmfast.LinearMixedModel`), not by a store of recent calls, and preparing them is
#: a small part of their fit.
FINGERPRINT_MAX_ROWS = 10_000


def frame_fingerprint(data: object, columns: Sequence[str]) -> bytes | None:
    """The fingerprint of ``columns`` of ``data`` (a pandas or polars DataFrame or a pyarrow
    Table of at most :data:`FINGERPRINT_MAX_ROWS` rows), or None where it declines."""
    kind = (type(data).__module__.split(".")[0], type(data).__name__)
    if kind in (("polars", "DataFrame"), ("pyarrow", "Table")):
        return _arrow_fingerprint(data, columns, kind[0])
    if not isinstance(data, pd.DataFrame) or len(data) > FINGERPRINT_MAX_ROWS:
        return None
    names = [str(label) for label in data.columns]
    label_of = dict(zip(names, data.columns))
    if len(label_of) != len(names):
        return None  # two labels with one name: the model frame refuses these data
    digest = hashlib.blake2b(digest_size=32)
    digest.update(repr((len(data), names)).encode())
    for name in columns:
        if name not in label_of or not _add_column(digest, name, data[label_of[name]]):
            return None
    return digest.digest()


def _arrow_fingerprint(data: Any, columns: Sequence[str], kind: str) -> bytes | None:
    """:func:`frame_fingerprint` of a polars DataFrame or a pyarrow Table: each column by its
    Arrow buffers (polars hands them over without a copy)."""
    rows = data.num_rows if kind == "pyarrow" else data.height
    if rows > FINGERPRINT_MAX_ROWS:
        return None
    names = [str(name) for name in (data.column_names if kind == "pyarrow" else data.columns)]
    if len(set(names)) != len(names):
        return None
    digest = hashlib.blake2b(digest_size=32)
    digest.update(repr((kind, rows, names)).encode())
    for name in columns:
        if name not in names:
            return None
        digest.update(repr(name).encode())
        _add_arrow(digest, data.column(name) if kind == "pyarrow" else data.get_column(name).to_arrow())
    return digest.digest()


def _add_column(digest: hashlib.blake2b, name: str, column: pd.Series) -> bool:
    dtype = column.dtype
    digest.update(repr((name, str(dtype))).encode())
    if isinstance(dtype, pd.CategoricalDtype):
        digest.update(b"ordered" if dtype.ordered else b"unordered")
        digest.update(column.cat.codes.to_numpy().tobytes())
        return _add_values(digest, dtype.categories.to_numpy())
    if isinstance(dtype, pd.ArrowDtype) or (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return _add_arrow(digest, column.array.__arrow_array__())
    if isinstance(dtype, pd.StringDtype):
        return _add_values(digest, column.to_numpy(dtype=object))
    if isinstance(dtype, np.dtype):
        return _add_values(digest, column.to_numpy())
    return False


def _add_arrow(digest: hashlib.blake2b, array: Any) -> bool:
    """An Arrow array by its buffers as they are (validity, offsets, values; a dictionary's
    too), with each chunk's type, offset and length: equal bytes are equal values; equal
    values stored apart (other chunks or slices) only miss."""
    for chunk in getattr(array, "chunks", [array]):
        digest.update(repr((chunk.offset, len(chunk), str(chunk.type))).encode())
        for buffer in chunk.buffers():
            if buffer is None:
                digest.update(b"\x00")
            else:
                digest.update(b"\x01" + len(buffer).to_bytes(8, "little"))
                digest.update(memoryview(buffer))
        dictionary = getattr(chunk, "dictionary", None)
        if dictionary is not None:  # categories: the codes above, the levels here
            _add_arrow(digest, dictionary)
    return True


def _add_values(digest: hashlib.blake2b, values: np.ndarray) -> bool:
    if values.dtype.kind in "biuf":
        digest.update(str(values.dtype).encode())
        digest.update(np.ascontiguousarray(values).tobytes())
        return True
    if values.dtype.kind == "O" and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        # every value a str or missing: the missing ones by position, the others by their hashes
        digest.update(np.packbits(pd.isna(values)).tobytes())
        digest.update(pd.util.hash_array(values, categorize=False).tobytes())
        return True
    return False
