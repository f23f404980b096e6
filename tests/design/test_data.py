"""Data inputs: every supported container, missing values, and the user's data left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import lmmfast
from lmmfast.design import build_model_frame
from lmmfast.errors import DataError

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def reference(sleep: pd.DataFrame) -> lmmfast.LmmResult:
    return lmmfast.lmm(FORMULA, sleep)


@pytest.mark.parametrize(
    "convert",
    [
        lambda d: pl.from_pandas(d),
        lambda d: pl.from_pandas(d).lazy(),
        lambda d: pa.Table.from_pandas(d),
        lambda d: {c: d[c].to_numpy() for c in d.columns},
        lambda d: {c: d[c].tolist() for c in d.columns},
        lambda d: d.astype({"Subject": "category"}),
        lambda d: d.astype({"Subject": str}),
    ],
    ids=["polars", "polars-lazy", "pyarrow", "dict-numpy", "dict-lists", "categorical", "string-groups"],
)
def test_every_container_gives_the_same_fit(sleep, reference, convert) -> None:
    fit = lmmfast.lmm(FORMULA, convert(sleep))
    assert fit.objective == pytest.approx(reference.objective, rel=1e-12)
    np.testing.assert_allclose(fit.fixef.to_numpy(), reference.fixef.to_numpy(), rtol=1e-10)


def test_data_are_not_modified(sleep) -> None:
    data = sleep.copy()
    data.loc[3, "Reaction"] = np.nan
    before = data.copy(deep=True)
    lmmfast.lmm(FORMULA, data)
    pd.testing.assert_frame_equal(data, before)


def test_rows_with_missing_values_are_dropped_and_counted(sleep, reference) -> None:
    data = sleep.copy()
    data["Reaction"] = data["Reaction"].astype(float)
    data.loc[[5, 17], "Reaction"] = np.nan
    data.loc[40, "Days"] = np.nan
    fit = lmmfast.lmm(FORMULA, data)
    assert fit.nobs == 177
    assert fit.dropped_rows.tolist() == [5, 17, 40]
    assert "3 rows with missing values dropped" in fit.summary()
    direct = lmmfast.lmm(FORMULA, sleep.drop(index=[5, 17, 40]))
    assert fit.objective == pytest.approx(direct.objective, rel=1e-12)


def test_unused_columns_with_missing_values_do_not_drop_rows(sleep) -> None:
    data = sleep.assign(unused=np.nan)
    assert lmmfast.lmm(FORMULA, data).nobs == 180


def test_model_frame_copies_only_needed_columns() -> None:
    frame = build_model_frame({"y": [1.0, 2.0, 3.0], "g": ["a", "b", "a"], "z": [0, 0, 0]}, ["y", "g"])
    assert list(frame.frame.columns) == ["y", "g"]
    assert frame.n_input_rows == 3


def test_unequal_dict_columns_are_rejected() -> None:
    with pytest.raises(DataError, match="unequal lengths"):
        build_model_frame({"y": [1.0, 2.0], "g": ["a"]}, ["y", "g"])


def test_unknown_container_is_rejected() -> None:
    with pytest.raises(DataError, match="pandas or polars DataFrame"):
        build_model_frame([[1, 2]], ["y"])


def test_non_string_column_labels_are_matched_by_their_text() -> None:
    frame = pd.DataFrame(
        {0: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y": [1.0, 2.5, 3.0, 5.0, 4.0, 6.5], "g": [1, 1, 2, 2, 3, 3]}
    )
    selected = build_model_frame(frame, ["y", "g"]).frame
    assert list(selected.columns) == ["y", "g"]
    assert selected.y.tolist() == frame.y.tolist()


def test_a_lazy_frame_is_collected_for_the_used_columns_only(sleep) -> None:
    """A polars LazyFrame failed with AttributeError; its unused columns are not collected."""
    lazy = pl.from_pandas(sleep.assign(unused=np.nan)).lazy()
    frame = build_model_frame(lazy, ["Reaction", "Subject"]).frame
    assert list(frame.columns) == ["Reaction", "Subject"] and len(frame) == 180
    fit = lmmfast.lmm(FORMULA, lazy)
    assert fit.predict(pl.from_pandas(sleep).lazy()) == pytest.approx(fit.fitted())
