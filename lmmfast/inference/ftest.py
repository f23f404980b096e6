"""Joint F tests of fixed effects with Satterthwaite's df (lmerTest's ``contestMD``).

For L (q × p) with V = L C L' = P D P', the q directions P'L are tested one by one: tᵢ² =
((P'Lβ)ᵢ)² / dᵢ and F = Σ tᵢ² / q; with νᵢ their Satterthwaite df and E = Σ νᵢ/(νᵢ − 2)
over νᵢ > 2, the denominator df is 2E/(E − q) when E > q.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from lmmfast.errors import DataError
from lmmfast.inference.satterthwaite import contrast_df

if TYPE_CHECKING:
    from lmmfast.result import LmmResult


def contrast_test(fit: LmmResult, contrasts: np.ndarray | pd.DataFrame) -> dict[str, float]:
    """F test of Lβ = 0.

    Parameters
    ----------
    fit : LmmResult
    contrasts : array (q × p) or DataFrame whose columns are fixed-effect names

    Returns
    -------
    dict with ``F``, ``num_df``, ``den_df``, ``p_value``

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("score ~ Machine + (1 | Worker/Machine)", lmmfast.datasets.load("machines"))
    >>> result = contrast_test(fit, [[0, 1, 0], [0, 0, 1]])
    >>> round(result["F"], 3), round(result["den_df"], 2)
    (20.576, 10.0)
    """
    names = list(fit.fixef_names)
    if isinstance(contrasts, pd.DataFrame):
        unknown = [c for c in contrasts.columns if c not in names]
        if unknown:
            raise DataError(f"Contrast columns {unknown} are not fixed effects of this fit ({names}).")
        L = contrasts.reindex(columns=names, fill_value=0.0).to_numpy(dtype=np.float64)
    else:
        try:
            L = np.atleast_2d(np.asarray(contrasts, dtype=np.float64))
        except (TypeError, ValueError):
            raise DataError("contrasts must be a numeric matrix with one column per fixed effect.") from None
    if L.ndim != 2 or L.shape[1] != len(names) or L.shape[0] == 0 or not np.all(np.isfinite(L)):
        raise DataError(f"contrasts must be a finite matrix with {len(names)} columns (one per fixed effect), got shape {L.shape}.")
    C = fit.beta_covariance
    A, J = fit.variance_derivatives
    eigenvalues, vectors = np.linalg.eigh(L @ C @ L.T)
    tolerance = 1e-8 * max(eigenvalues.max(), 1e-300)
    keep = eigenvalues > tolerance
    if not keep.any():
        raise DataError("The contrasts have zero variance; they do not test any fixed effect.")
    directions = vectors[:, keep].T @ L
    q = int(keep.sum())
    t2 = (directions @ fit.beta) ** 2 / eigenvalues[keep]
    F = float(t2.sum() / q)
    nu = np.array([contrast_df(d, C, A, J) for d in directions])
    if q == 1:
        den_df = float(nu[0])
    else:
        E = float(np.sum(nu[nu > 2] / (nu[nu > 2] - 2)))
        den_df = 2 * E / (E - q) if E > q else float(np.min(nu))
    return {"F": F, "num_df": float(q), "den_df": den_df, "p_value": float(stats.f.sf(F, q, den_df))}


def term_tests(fit: LmmResult) -> pd.DataFrame:
    """One F test per term of the fixed-effects formula: are all its coefficients zero?

    For a term that no higher-order term of the model contains (``marginal`` True), this is
    the type III test whatever the coding. For a term inside an interaction it is type III
    only under sum-to-zero coding (write ``C(x, contr.sum)``); with the default treatment
    coding it tests the effect at the reference levels of the other factors.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("score ~ Machine + (1 | Worker/Machine)", lmmfast.datasets.load("machines"))
    >>> term_tests(fit).loc["Machine", "num_df"]
    np.float64(2.0)
    """
    spec = fit.model.fixed.spec
    kept = list(fit.model.fixed.kept)
    position = {column: i for i, column in enumerate(kept)}
    terms = [(term, [position[c] for c in columns if c in position]) for term, columns in spec.term_indices.items()]
    factor_sets = {str(term): {str(f) for f in term.factors} for term, _ in terms}
    rows = {}
    for term, columns in terms:
        name = str(term)
        if name == "1" or not columns:
            continue
        L = np.eye(len(kept))[columns]
        result = contrast_test(fit, L)
        mine = factor_sets[name]
        marginal = not any(mine < other for key, other in factor_sets.items() if key != name)
        rows[name] = {**result, "marginal": marginal}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["F", "num_df", "den_df", "p_value", "marginal"])
