"""The tail probabilities and quantiles the tests and intervals need, from ``scipy.special``.

``scipy.stats`` would give the same numbers (its distributions call these functions) but
takes a quarter of a second to import, which every new process — the command line, a tool's
subprocess, a worker — would pay before its first fit. The rare needs beyond these
(the studentized range, binomial intervals) import ``scipy.stats`` where they are used.
``scipy.special`` itself (30 ms) is imported by each function, on its first call: a fit
needs none of them.
"""

from __future__ import annotations

import numpy as np


def normal_sf(x: np.ndarray | float) -> np.ndarray | float:
    """P(Z > x) for a standard normal Z.

    Examples
    --------
    >>> round(float(normal_sf(1.959964)), 6)
    0.025
    """
    from scipy import special

    return special.ndtr(-np.asarray(x, dtype=np.float64))[()]


def normal_quantile(p: np.ndarray | float) -> np.ndarray | float:
    """The standard normal's p-quantile.

    Examples
    --------
    >>> round(float(normal_quantile(0.975)), 6)
    1.959964
    """
    from scipy import special

    return special.ndtri(np.asarray(p, dtype=np.float64))[()]


def t_sf(x: np.ndarray | float, df: np.ndarray | float) -> np.ndarray | float:
    """P(T > x) for Student's t with ``df`` degrees of freedom (any positive real, or ∞).

    Examples
    --------
    >>> round(float(t_sf(2.0, 5.5)), 6)
    0.048377
    """
    from scipy import special

    return special.stdtr(np.asarray(df, dtype=np.float64), -np.asarray(x, dtype=np.float64))[()]


def t_quantile(p: np.ndarray | float, df: np.ndarray | float) -> np.ndarray | float:
    """Student's t p-quantile with ``df`` degrees of freedom.

    Examples
    --------
    >>> round(float(t_quantile(0.975, 7.3)), 6)
    2.345067
    """
    from scipy import special

    return special.stdtrit(np.asarray(df, dtype=np.float64), np.asarray(p, dtype=np.float64))[()]


def chi2_sf(x: np.ndarray | float, df: np.ndarray | float) -> np.ndarray | float:
    """P(X > x) for a χ² with ``df`` degrees of freedom.

    Examples
    --------
    >>> round(float(chi2_sf(7.1, 3)), 6)
    0.068778
    """
    from scipy import special

    return special.chdtrc(np.asarray(df, dtype=np.float64), np.asarray(x, dtype=np.float64))[()]


def f_sf(x: np.ndarray | float, df1: np.ndarray | float, df2: np.ndarray | float) -> np.ndarray | float:
    """P(F > x) for Fisher's F with (``df1``, ``df2``) degrees of freedom.

    Examples
    --------
    >>> round(float(f_sf(3.1, 2, 7.5)), 6)
    0.104419
    """
    from scipy import special

    return special.fdtrc(
        np.asarray(df1, dtype=np.float64), np.asarray(df2, dtype=np.float64), np.asarray(x, dtype=np.float64)
    )[()]


def f_cdf(x: np.ndarray | float, df1: np.ndarray | float, df2: np.ndarray | float) -> np.ndarray | float:
    """P(F ≤ x) for Fisher's F with (``df1``, ``df2``) degrees of freedom.

    Examples
    --------
    >>> round(float(f_cdf(3.1, 1, 7.5)), 6)
    0.881171
    """
    from scipy import special

    return special.fdtr(
        np.asarray(df1, dtype=np.float64), np.asarray(df2, dtype=np.float64), np.asarray(x, dtype=np.float64)
    )[()]
