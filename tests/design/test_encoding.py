"""spec_fits: a model spec learnt from other data is reused only where it builds the matrix a
spec learnt afresh would."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

from lmmfast.design.encoding import column_kinds, dtype_kind, spec_fits

FRAME = pd.DataFrame(
    {
        "x": [0.0, 1.0, 2.0, 3.0],
        "n": [1, 2, 1, 2],
        "f": ["a", "b", "c", "a"],
        "b": [True, False, True, False],
        "c": pd.Categorical(["u", "v", "u", "v"], categories=["u", "v", "w"]),
    }
)


def fits(formula: str, new: pd.DataFrame) -> bool:
    spec = model_matrix(formula, FRAME, output="numpy").model_spec
    reused = spec_fits(spec, column_kinds(FRAME), new)
    if reused:  # then it must build what a spec learnt from the new data builds
        fresh = model_matrix(formula, new, output="numpy")
        np.testing.assert_array_equal(spec.get_model_matrix(new, output="numpy"), fresh)
        assert list(spec.column_names) == list(fresh.model_spec.column_names)
    return reused


@pytest.mark.parametrize(
    ("formula", "new", "expected"),
    [
        ("x + f", FRAME.iloc[::-1], True),
        ("x + f", FRAME.iloc[[0, 1, 3]], False),  # level c gone
        ("x + f", FRAME.assign(f=["a", "b", "d", "a"]), False),  # a new level
        ("x * f", FRAME.iloc[[2, 0, 1]], True),
        ("C(f, contr.sum)", FRAME.iloc[::-1], True),
        ("C(n)", FRAME.iloc[[0, 1]], True),
        ("C(n)", FRAME.iloc[[0, 2]], False),
        ("b", FRAME.iloc[[1, 0]], True),
        ("b", FRAME.iloc[[0, 2]], True),  # formulaic codes a boolean as 0/1, a number
        ("c", FRAME.iloc[[0, 1]], True),  # a categorical keeps its unused categories
        ("c", FRAME.assign(c=pd.Categorical(["u", "v", "u", "v"])), False),
        ("x", FRAME.assign(x=["0", "1", "2", "3"]), False),  # now text: a factor
        ("scale(x)", FRAME, False),  # stateful: its mean and scale are the data's
        ("C(n + 1)", FRAME.assign(n=[2, 3, 2, 3]), False),  # a factor of an expression
        ("np.log(x + 1) + n:x", FRAME.iloc[[3, 2]], True),
    ],
)
def test_spec_fits_only_where_it_builds_the_fresh_matrix(formula, new, expected) -> None:
    assert fits(formula, new.reset_index(drop=True)) is expected


def test_dtype_kind_agrees_with_pandas_tests() -> None:
    import pyarrow as pa

    dtypes = [np.dtype(name) for name in ("int8", "uint16", "float32", "bool", "object", "complex128", "U3")]
    dtypes += [pd.Int64Dtype(), pd.BooleanDtype(), pd.StringDtype(), pd.CategoricalDtype(["a"])]
    dtypes += [pd.ArrowDtype(pa.int64()), pd.ArrowDtype(pa.string()), pd.ArrowDtype(pa.bool_())]
    for dtype in dtypes:
        if pd.api.types.is_bool_dtype(dtype):
            expected = "boolean"
        elif pd.api.types.is_numeric_dtype(dtype):
            expected = "numeric"
        else:
            expected = "text or categorical"
        assert dtype_kind(dtype) == expected, dtype
