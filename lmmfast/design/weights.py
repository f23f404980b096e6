"""Prior weights: from a column or an array to validated values per complete case."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lmmfast.design.data import ModelFrame
from lmmfast.errors import DataError


def prior_weights(
    weights: str | Sequence[float] | np.ndarray | None, frame_info: ModelFrame
) -> tuple[np.ndarray | None, str | None]:
    """Validated prior weights for the complete cases, and the name to print for them.

    ``weights`` is a column of the model frame or one value per row of the user's data
    (rows dropped for missing values are dropped from it too).

    Examples
    --------
    >>> from lmmfast.design.data import build_model_frame
    >>> frame = build_model_frame({"y": [1.0, None, 2.0], "w": [1.0, 2.0, 3.0]}, ["y", "w"])
    >>> values, name = prior_weights("w", frame)
    >>> values.tolist(), name
    ([1.0, 3.0], 'w')
    """
    if weights is None:
        return None, None
    if isinstance(weights, str):
        column = frame_info.frame[weights]
        if not pd.api.types.is_numeric_dtype(column):
            raise DataError(f"The weights column {weights!r} must be numeric, got {column.dtype}.")
        values, name = column.to_numpy(dtype=np.float64), weights
    else:
        try:
            given = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("weights must be a column name or an array of positive numbers.") from None
        if given.ndim != 1 or len(given) != frame_info.n_input_rows:
            raise DataError(
                f"weights must hold one value per row of the data ({frame_info.n_input_rows}), got shape {given.shape}."
            )
        keep = np.ones(frame_info.n_input_rows, dtype=bool)
        keep[frame_info.dropped_rows] = False
        values, name = given[keep], "weights"
        if np.any(np.isnan(values)):
            raise DataError("weights has missing values; give every row a positive weight.")
    if not np.all(np.isfinite(values)):
        raise DataError(f"The weights {name!r} have infinite values; weights must be finite and positive.")
    if np.any(values <= 0):
        raise DataError(
            f"The weights {name!r} have {int(np.sum(values <= 0))} values <= 0; prior weights must be "
            "positive (drop the rows that should not count)."
        )
    return values, name
