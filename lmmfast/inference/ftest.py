"""Joint F tests of fixed effects with Satterthwaite's df (lmerTest's ``contestMD``).

For L (q × p) with V = L C L' = P D P', the q directions P'L are tested one by one: tᵢ² =
((P'Lβ)ᵢ)² / dᵢ and F = Σ tᵢ² / q; with νᵢ their Satterthwaite df and E = Σ νᵢ/(νᵢ − 2)
over νᵢ > 2, the denominator df is 2E/(E − q) when E > q.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from formulaic import model_matrix
from scipy import stats

from lmmfast.errors import DataError
from lmmfast.inference.satterthwaite import contrast_df, variance_derivatives

if TYPE_CHECKING:
    from lmmfast.result import LmmFit


def contrast_test(
    fit: LmmFit, contrasts: np.ndarray | pd.DataFrame, derivatives: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, float]:
    """F test of Lβ = 0.

    Parameters
    ----------
    fit : LmmFit
    contrasts : array (q × p) or DataFrame whose columns are fixed-effect names
    derivatives : tuple, optional
        :func:`~lmmfast.inference.satterthwaite.variance_derivatives` of ``fit`` where
        already computed.

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
        raise DataError(
            f"contrasts must be a finite matrix with {len(names)} columns (one per fixed effect), got shape {L.shape}."
        )
    C = fit.beta_covariance
    A, J = variance_derivatives(fit) if derivatives is None else derivatives
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
        den_df = 2 * E / (E - q) if q < E else float(np.min(nu))
    return {"F": F, "num_df": float(q), "den_df": den_df, "p_value": float(stats.f.sf(F, q, den_df))}


def _sum_coded_map(fit: LmmFit) -> tuple[np.ndarray, Any] | None:
    """(T, spec) with X_sum = X T for the same fixed part coded with sum-to-zero contrasts,
    or None when that recoding does not apply (explicit ``C(...)``, aliased columns)."""
    model = fit.model
    fixed = model.formula.fixed
    frame = model.model_frame.frame
    categorical = [
        c
        for c in frame.columns
        if c != model.formula.response
        and not pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    if not categorical or "C(" in fixed or model.fixed.dropped:
        return None
    rewritten = fixed
    for name in categorical:
        rewritten = re.sub(rf"(?<![\w.`]){re.escape(name)}(?![\w.(`])", f"C({name}, contr.sum)", rewritten)
    try:
        matrix = model_matrix(rewritten, frame, na_action="raise")
    except Exception:  # noqa: BLE001 - formulaic raises many types; recoding then does not apply
        return None
    X_sum = np.asarray(matrix, dtype=np.float64)
    X = model.fixed.X
    if X_sum.shape != X.shape:
        return None
    T, *_ = np.linalg.lstsq(X, X_sum, rcond=None)
    if not np.allclose(X @ T, X_sum, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(X_sum).max())):
        return None
    return T, matrix.model_spec


def term_tests(fit: LmmFit, derivatives: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Type III F tests, one per term of the fixed-effects formula (lmerTest's ``anova``).

    The hypotheses are those of the coefficients under sum-to-zero coding of the categorical
    predictors, which is what makes them type III; they are tested on this fit through the
    exact reparametrisation X_sum = X T, whatever coding the formula used. Where recoding
    does not apply (explicit ``C(...)`` in the formula, aliased columns), each term's own
    coefficients are tested and ``type3`` says whether that is type III (it is for terms that
    no interaction contains, and for every term when the formula codes its factors with
    ``contr.sum``).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("score ~ Machine + (1 | Worker/Machine)", lmmfast.datasets.load("machines"))
    >>> float(term_tests(fit).loc["Machine", "num_df"])
    2.0
    """
    spec: Any = fit.model.fixed.spec
    kept = list(fit.model.fixed.kept)
    position = {column: i for i, column in enumerate(kept)}
    original = [(term, [position[c] for c in columns if c in position]) for term, columns in spec.term_indices.items()]
    factor_sets = {str(term): {str(f) for f in term.factors} for term, _ in original}
    recoded = _sum_coded_map(fit)
    p = len(kept)
    derivatives = variance_derivatives(fit) if derivatives is None else derivatives
    rows = {}
    if recoded is not None:
        T, sum_spec = recoded
        inverse = np.linalg.inv(T)
        for (term, _), sum_columns in zip(original, sum_spec.term_indices.values()):
            name = str(term)
            if name == "1" or not sum_columns:
                continue
            result = contrast_test(fit, np.eye(p)[list(sum_columns)] @ inverse, derivatives)
            rows[name] = {**result, "type3": True}
    else:
        for term, columns in original:
            name = str(term)
            if name == "1" or not columns:
                continue
            mine = factor_sets[name]
            contained = any(mine < other for key, other in factor_sets.items() if key != name)
            result = contrast_test(fit, np.eye(p)[columns], derivatives)
            rows[name] = {**result, "type3": not contained or "contr.sum" in fit.model.formula.fixed}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["F", "num_df", "den_df", "p_value", "type3"])
