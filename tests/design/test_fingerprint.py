"""The fingerprint of a frame's columns: equal for equal values, different for any change a
model could see, and declined where it cannot be told cheaply."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmfast.design.fingerprint import FINGERPRINT_MAX_ROWS, frame_fingerprint

FRAME = pd.DataFrame(
    {
        "y": [1.0, 2.0, np.nan],
        "n": [1, 2, 3],
        "s": ["a", None, "c"],
        "t": pd.array(["a", "b", None], dtype="string"),
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
        lambda f: f.assign(t=pd.array(["a", "b", "None"], dtype="string")),
        lambda f: f.assign(c=pd.Categorical(["x", "y", "x"], categories=["y", "x"])),
        lambda f: f.assign(c=pd.Categorical(["x", "y", "x"], ordered=True)),
        lambda f: f.assign(c=["x", "y", "x"]),
        lambda f: f.rename(columns={"y": "z"}),
    ],
    ids=["float", "dtype", "missing-string", "string-dtype", "category-order", "ordered", "not-categorical", "name"],
)
def test_any_change_a_model_could_see_changes_it(change) -> None:
    changed = change(FRAME)
    assert fingerprint(changed) not in (None, fingerprint(FRAME))


def test_only_the_named_columns_count() -> None:
    assert frame_fingerprint(FRAME, ["y"]) == frame_fingerprint(FRAME.assign(n=[7, 8, 9]), ["y"])


@pytest.mark.parametrize(
    ("data", "columns"),
    [
        (pd.DataFrame({"m": [1, "1", 2.0]}), ["m"]),  # mixed Python objects
        (pd.DataFrame({"b": pd.array([True, None, False], dtype="boolean")}), ["b"]),  # another extension dtype
        (pd.DataFrame({"y": np.zeros(FINGERPRINT_MAX_ROWS + 1)}), ["y"]),  # too many rows
        ({"y": [1.0, 2.0]}, ["y"]),  # not a pandas DataFrame
        (pd.DataFrame([[1.0, 2.0]], columns=["y", "y"]), ["y"]),  # one name twice
        (FRAME, ["absent"]),
    ],
    ids=["mixed", "extension", "large", "dict", "duplicate", "absent"],
)
def test_it_declines_what_it_cannot_tell(data, columns) -> None:
    assert frame_fingerprint(data, columns) is None
