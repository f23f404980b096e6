"""The p-values and quantiles of lmmfast.distributions are scipy.stats's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lmmfast import distributions

X = np.array([0.0, 0.3, 1.0, 1.96, 4.0, 12.0])
DF = [0.7, 1.0, 3.5, 17.2, 1e4, np.inf]


@pytest.mark.parametrize("df", DF)
def test_student_t(df) -> None:
    np.testing.assert_allclose(distributions.t_sf(X, df), stats.t.sf(X, df), rtol=1e-12, atol=1e-300)
    p = np.array([0.6, 0.9, 0.975, 0.9995])
    np.testing.assert_allclose(distributions.t_quantile(p, df), stats.t.ppf(p, df), rtol=1e-10)


@pytest.mark.parametrize("df", DF[:-1])
def test_chi2_and_f(df) -> None:
    np.testing.assert_allclose(distributions.chi2_sf(X, df), stats.chi2.sf(X, df), rtol=1e-12, atol=1e-300)
    for df1 in (1, 2.5, 8):
        np.testing.assert_allclose(distributions.f_sf(X, df1, df), stats.f.sf(X, df1, df), rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(distributions.f_cdf(X, df1, df), stats.f.cdf(X, df1, df), rtol=1e-10)


def test_normal() -> None:
    np.testing.assert_allclose(distributions.normal_sf(X), stats.norm.sf(X), rtol=1e-12)
    p = np.array([1e-10, 0.025, 0.5, 0.975])
    np.testing.assert_allclose(distributions.normal_quantile(p), stats.norm.ppf(p), rtol=1e-12)
    assert isinstance(distributions.normal_quantile(0.975), float)  # scalars stay scalars
