"""The fingerprint of a frame's columns: equal for equal values, different for any change a
model could see, and declined where it cannot be told cheaply."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from lmmfast.design.fingerprint import FINGERPRINT_MAX_ROWS, frame_fingerprint

FRAME = pd.DataFrame(
    {
        "y": [1.0, 2.0, np.nan],
        "n": [1, 2, 3],
        "s": ["a", None, "c"],
        "t": pd.array(["a", "b", None], dtype=pd.StringDtype("pyarrow")),
        "u": pd.array(["a", "b", None], dtype=pd.StringDtype("python")),
        "v": pd.Series(["a", "b", "c"], dtype="str"),
        "c": pd.Categorical(["x", "y", "x"]),
    }
)


def fingerprint(frame: pd.DataFrame) -> bytes | None:
    return frame_fingerprint(frame, list(frame.columns))


def test_equal_frames_have_equal_fingerprints() -> None:
    assert fingerprint(FRAME) is not None
    assert fingerprint(FRAME) == fingerprint(FRAME.copy(deep=True))


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(y=[1.0, 2.5, np.nan]),
        lambda f: f.assign(n=[1.0, 2.0, 3.0]),
        lambda f: f.assign(s=["a", "None", "c"]),  # a missing value against the string "None"
        lambda f: f.assign(t=pd.array(["a", "b", "None"], dtype=pd.StringDtype("pyarrow"))),
        lambda f: f.assign(t=pd.array(["a", "c", None], dtype=pd.StringDtype("pyarrow"))),
        lambda f: f.assign(u=pd.array(["a", "b", "None"], dtype=pd.StringDtype("python"))),
        lambda f: f.assign(v=pd.Series(["a", "b", "d"], dtype="str")),
        lambda f: f.assign(v=pd.Series(["a", "b", "c"], dtype=pd.StringDtype("pyarrow"))),
        lambda f: f.assign(c=pd.Categorical(["x", "y", "x"], categories=["y", "x"])),
        lambda f: f.assign(c=pd.Categorical(["x", "y", "x"], ordered=True)),
        lambda f: f.assign(c=["x", "y", "x"]),
        lambda f: f.rename(columns={"y": "z"}),
    ],
    ids=[
        "float",
        "dtype",
        "missing-string",
        "arrow-missing",
        "arrow-value",
        "python-string",
        "str-value",
        "str-na-kind",
        "category-order",
        "ordered",
        "not-categorical",
        "name",
    ],
)
def test_any_change_a_model_could_see_changes_it(change) -> None:
    changed = change(FRAME)
    assert fingerprint(changed) not in (None, fingerprint(FRAME))


def test_arrow_strings_stored_apart_give_the_same_or_another_fingerprint_never_a_wrong_match() -> None:
    whole = pd.DataFrame({"s": pd.Series(["x", "y", "z", "w"], dtype="str")})
    sliced = pd.DataFrame({"s": pd.Series(["q", "x", "y", "z", "w"], dtype="str").iloc[1:].reset_index(drop=True)})
    assert sliced["s"].tolist() == whole["s"].tolist()
    assert frame_fingerprint(whole, ["s"]) == frame_fingerprint(whole.copy(), ["s"])
    assert frame_fingerprint(sliced, ["s"]) is not None
    shifted = pd.DataFrame({"s": pd.Series(["q", "x", "y", "z", "w"], dtype="str").iloc[:-1].reset_index(drop=True)})
    assert frame_fingerprint(shifted, ["s"]) != frame_fingerprint(sliced, ["s"])


POLARS = pl.DataFrame(
    {
        "y": [1.0, None, 3.0],
        "n": [1, 2, 3],
        "g": ["a", None, "c"],
        "c": pl.Series(["x", "y", "x"], dtype=pl.Enum(["x", "y"])),
    }
)


@pytest.mark.parametrize("convert", [lambda f: f, lambda f: f.to_arrow()], ids=["polars", "pyarrow"])
def test_polars_and_arrow_frames_are_fingerprinted_by_their_buffers(convert) -> None:
    columns = list(POLARS.columns)
    frame = convert(POLARS)
    assert frame_fingerprint(frame, columns) is not None
    assert frame_fingerprint(frame, columns) == frame_fingerprint(convert(POLARS.clone()), columns)
    changes = [
        POLARS.with_columns(y=pl.Series([1.0, None, 3.5])),
        POLARS.with_columns(n=pl.Series([1.0, 2.0, 3.0])),
        POLARS.with_columns(g=pl.Series(["a", "None", "c"])),
        POLARS.with_columns(c=pl.Series(["x", "y", "x"], dtype=pl.Enum(["y", "x"]))),  # the levels' order
        POLARS.rename({"y": "z"}).with_columns(y=pl.Series([1.0, None, 3.0])),
    ]
    for changed in changes:
        assert frame_fingerprint(convert(changed), columns) not in (None, frame_fingerprint(frame, columns))
    assert frame_fingerprint(frame, ["absent"]) is None


def test_pandas_columns_backed_by_arrow_are_fingerprinted_by_their_buffers() -> None:
    frame = pd.DataFrame({"y": [1.5, 2.0, 3.0], "g": ["a", "b", "a"]}).convert_dtypes(dtype_backend="pyarrow")
    assert isinstance(frame["y"].dtype, pd.ArrowDtype)
    assert frame_fingerprint(frame, ["y", "g"]) == frame_fingerprint(frame.copy(), ["y", "g"]) is not None
    changed = frame.assign(y=pd.array([1.5, 2.0, 3.5], dtype=frame["y"].dtype))
    assert frame_fingerprint(changed, ["y", "g"]) != frame_fingerprint(frame, ["y", "g"])


def test_the_kind_of_container_is_part_of_the_fingerprint() -> None:
    frame = pl.DataFrame({"y": [1.0, 2.0]})
    assert frame_fingerprint(frame, ["y"]) != frame_fingerprint(frame.to_arrow(), ["y"])
    assert frame_fingerprint(frame, ["y"]) != frame_fingerprint(frame.to_pandas(), ["y"])
    assert frame_fingerprint(frame.lazy(), ["y"]) is None
    assert frame_fingerprint(pl.DataFrame({"y": np.zeros(FINGERPRINT_MAX_ROWS + 1)}), ["y"]) is None
    assert frame_fingerprint(pa.table([[1.0], [2.0]], names=["y", "y"]), ["y"]) is None


def test_only_the_named_columns_count() -> None:
    assert frame_fingerprint(FRAME, ["y"]) == frame_fingerprint(FRAME.assign(n=[7, 8, 9]), ["y"])


@pytest.mark.parametrize(
    ("data", "columns"),
    [
        (pd.DataFrame({"m": [1, "1", 2.0]}), ["m"]),  # mixed Python objects
        (pd.DataFrame({"b": pd.array([True, None, False], dtype="boolean")}), ["b"]),  # another extension dtype
        (pd.DataFrame({"y": np.zeros(FINGERPRINT_MAX_ROWS + 1)}), ["y"]),  # too many rows
        ({"y": [1.0, 2.0]}, ["y"]),  # a dict of columns
        (pd.DataFrame([[1.0, 2.0]], columns=["y", "y"]), ["y"]),  # one name twice
        (FRAME, ["absent"]),
    ],
    ids=["mixed", "extension", "large", "dict", "duplicate", "absent"],
)
def test_it_declines_what_it_cannot_tell(data, columns) -> None:
    assert frame_fingerprint(data, columns) is None
