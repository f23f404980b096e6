"""The radix ordering of small integer keys is numpy.lexsort's."""

from __future__ import annotations

import numpy as np
import pytest

from lmmfast.factor.ordering import stable_order


@pytest.mark.parametrize(
    ("bounds", "n"), [((7,), 50), ((500, 2000), 100_000), ((3, 2**16, 40), 5000), ((2**20, 5), 1000)]
)
def test_stable_order_is_lexsorts(bounds, n) -> None:
    rng = np.random.default_rng(len(bounds) * n)
    keys = tuple(rng.integers(0, bound, n) for bound in bounds)
    np.testing.assert_array_equal(stable_order(keys, bounds), np.lexsort(keys))


def test_ties_keep_their_order() -> None:
    np.testing.assert_array_equal(stable_order((np.zeros(5, dtype=np.int64),), (1,)), np.arange(5))
