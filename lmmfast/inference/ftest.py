"""Joint F tests of fixed effects with Satterthwaite's or Kenward–Roger's df (lmerTest's
``contestMD`` and ``anova(m, type, ddf)``).

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

from lmmfast.distributions import f_sf
from lmmfast.errors import ArgumentError, DataError
from lmmfast.formula.contrasts import plain_name
from lmmfast.inference.kenward_roger import KenwardRoger, kenward_roger
from lmmfast.inference.satterthwaite import contrast_df, variance_derivatives
from lmmfast.validation import check_choice

if TYPE_CHECKING:
    from lmmfast.result import LmmFit


def contrast_test(
    fit: LmmFit,
    contrasts: np.ndarray | pd.DataFrame,
    derivatives: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    ddf: str = "satterthwaite",
    adjustment: KenwardRoger | None = None,
) -> dict[str, float]:
    """F test of Lβ = 0.

    Parameters
    ----------
    fit : LmmFit
    contrasts : array (q × p) or DataFrame whose columns are fixed-effect names
    derivatives : tuple, optional
        :func:`~lmmfast.inference.satterthwaite.variance_derivatives` of ``fit`` where
        already computed.
    ddf : {"satterthwaite", "kenward-roger"}
        Satterthwaite's F and df, or Kenward–Roger's scaled F and df (pbkrtest's ``KRmodcomp``).
    adjustment : KenwardRoger, optional
        :func:`~lmmfast.inference.kenward_roger.kenward_roger` of ``fit`` where already
        computed.

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
    check_choice("ddf", ddf, DDF_METHODS)
    C = fit.beta_covariance
    if ddf == "kenward-roger":
        adjustment = kenward_roger(fit) if adjustment is None else adjustment
        eigenvalues = np.linalg.eigvalsh(L @ C @ L.T)
        if not np.any(eigenvalues > 1e-8 * max(eigenvalues.max(), 1e-300)):
            raise DataError("The contrasts have zero variance; they do not test any fixed effect.")
        result = adjustment.test(L, fit.beta)
        return {key: result[key] for key in ("F", "num_df", "den_df", "p_value")}
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
    return {"F": F, "num_df": float(q), "den_df": den_df, "p_value": float(f_sf(F, q, den_df))}


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
    model.require_rows("Type III tests of categorical predictors (which recode X with sum-to-zero contrasts)")
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


#: The types of :func:`term_tests` (lmerTest's ``anova(m, type=)``).
TEST_TYPES = (1, 2, 3)

#: Denominator df methods of the F tests.
DDF_METHODS = ("satterthwaite", "kenward-roger")


def _terms(fit: LmmFit) -> list[tuple[str, list[int], frozenset[str]]]:
    """The fixed part's terms but the intercept: name, columns of X (aliased ones left out),
    and the variables the term is made of."""
    spec: Any = fit.model.fixed.spec
    position = {column: i for i, column in enumerate(fit.model.fixed.kept)}
    terms = []
    for term, columns in spec.term_indices.items():
        kept = [position[c] for c in columns if c in position]
        if str(term) != "1" and kept:
            terms.append((plain_name(str(term)), kept, frozenset(plain_name(str(f)) for f in term.factors)))
    return terms


def _sequential_rows(xtx: np.ndarray, order: list[int]) -> np.ndarray:
    """The rows of the Cholesky factor R of X'X with its columns in ``order``, back in X's
    column order: row j tests column ``order[j]`` adjusted for the columns before it (the
    rows of lmerTest's normalised Doolittle factor, each scaled, which spans the same tests)."""
    R = np.linalg.cholesky(xtx[np.ix_(order, order)]).T
    rows = np.zeros_like(R)
    rows[:, order] = R
    return rows


def _fixed_gram(fit: LmmFit) -> np.ndarray:
    """X'X (unweighted, as lmerTest), from the cross-products where the rows are not held."""
    model = fit.model
    if model.has_rows:
        return model.fixed.X.T @ model.fixed.X
    if model.weights_name is not None:
        model.require_rows("Type I and II tests of a weighted model (which use the unweighted X'X)")
    p = len(model.fixed.names)
    return np.array(model.objective.cross_products.XytXy[:p, :p])


def type1_contrasts(fit: LmmFit) -> dict[str, np.ndarray]:
    """Type I (sequential) hypotheses per term: the term adjusted for the terms before it in
    the formula (lmerTest's ``get_contrasts_type1``)."""
    xtx = _fixed_gram(fit)
    rows = _sequential_rows(xtx, list(range(xtx.shape[0])))
    return {name: rows[columns] for name, columns, _ in _terms(fit)}


def type2_contrasts(fit: LmmFit) -> dict[str, np.ndarray]:
    """Type II hypotheses per term: a term that no other term contains is tested by its own
    coefficients; one that others contain (a main effect within an interaction), adjusted
    for every term unrelated to it, ignoring those that contain it (lmerTest's
    ``get_contrasts_type2_unfolded``)."""
    terms = _terms(fit)
    if len(terms) <= 1:
        return type1_contrasts(fit)
    xtx = _fixed_gram(fit)
    p = xtx.shape[0]
    out = {}
    for name, columns, factors in terms:
        containing = [c for other, cols, f in terms if other != name and factors < f for c in cols]
        if not containing:
            out[name] = np.eye(p)[columns]
            continue
        related = set(columns) | set(containing)
        unrelated = [j for j in range(p) if j not in related]
        rows = _sequential_rows(xtx, unrelated + columns + containing)
        out[name] = rows[len(unrelated) : len(unrelated) + len(columns)]
    return out


def type3_contrasts(fit: LmmFit) -> dict[str, tuple[np.ndarray, bool]]:
    """Type III hypotheses per term, and whether each is type III.

    They are the hypotheses of the coefficients under sum-to-zero coding of the categorical
    predictors; they are tested on this fit through the exact reparametrisation
    X_sum = X T, whatever coding the formula used. Where recoding does not apply (explicit
    ``C(...)`` in the formula, aliased columns), each term's own coefficients are tested, which
    is type III for terms that no interaction contains, and for every term when the formula
    codes its factors with ``contr.sum``."""
    p = len(fit.model.fixed.kept)
    recoded = _sum_coded_map(fit)
    out = {}
    if recoded is not None:
        T, sum_spec = recoded
        inverse = np.linalg.inv(T)
        # the recoded formula has the same terms in the same order, each coded C(f, contr.sum)
        original: Any = fit.model.fixed.spec
        for term, sum_columns in zip(original.term_indices, sum_spec.term_indices.values()):
            if str(term) != "1" and sum_columns:
                out[plain_name(str(term))] = (np.eye(p)[list(sum_columns)] @ inverse, True)
        return out
    terms = _terms(fit)
    for name, columns, factors in terms:
        contained = any(factors < other for key, _, other in terms if key != name)
        out[name] = (np.eye(p)[columns], not contained or "contr.sum" in fit.model.formula.fixed)
    return out


def term_tests(
    fit: LmmFit,
    derivatives: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    type: int = 3,
    ddf: str = "satterthwaite",
    adjustment: KenwardRoger | None = None,
) -> pd.DataFrame:
    """F tests, one per term of the fixed-effects formula: lmerTest's ``anova(m, type, ddf)``.

    Parameters
    ----------
    fit : LmmFit
    derivatives : tuple, optional
        :func:`~lmmfast.inference.satterthwaite.variance_derivatives` of ``fit`` where
        already computed (Satterthwaite).
    type : {1, 2, 3}
        Sequential (I), each term adjusted for the terms unrelated to it (II), or the
        hypotheses of sum-to-zero coding whatever the formula's coding (III; see
        :func:`type3_contrasts`).
    ddf : {"satterthwaite", "kenward-roger"}
    adjustment : KenwardRoger, optional
        :func:`~lmmfast.inference.kenward_roger.kenward_roger` of ``fit`` where already
        computed (Kenward–Roger).

    Returns
    -------
    pandas.DataFrame
        One row per term: ``sum_sq, mean_sq, num_df, den_df, F, p_value`` (the mean square is
        F σ̂², as lmerTest's), and for type III ``type3`` (see :func:`type3_contrasts`).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("score ~ Machine + (1 | Worker/Machine)", lmmfast.datasets.load("machines"))
    >>> float(term_tests(fit).loc["Machine", "num_df"])
    2.0
    """
    if type not in TEST_TYPES or isinstance(type, bool):
        raise ArgumentError(f"type must be 1, 2 or 3 (lmerTest's types of F tests), got {type!r}.")
    check_choice("ddf", ddf, DDF_METHODS)
    flags: dict[str, bool] = {}
    if type == 1:
        hypotheses = type1_contrasts(fit)
    elif type == 2:
        hypotheses = type2_contrasts(fit)
    else:
        both = type3_contrasts(fit)
        hypotheses = {name: L for name, (L, _) in both.items()}
        flags = {name: flag for name, (_, flag) in both.items()}
    if ddf == "satterthwaite":
        derivatives = variance_derivatives(fit) if derivatives is None else derivatives
    else:
        adjustment = kenward_roger(fit) if adjustment is None else adjustment
    rows = {}
    for name, L in hypotheses.items():
        result = contrast_test(fit, L, derivatives, ddf=ddf, adjustment=adjustment)
        mean_sq = result["F"] * fit.sigma**2
        rows[name] = {
            "sum_sq": mean_sq * result["num_df"],
            "mean_sq": mean_sq,
            "num_df": result["num_df"],
            "den_df": result["den_df"],
            "F": result["F"],
            "p_value": result["p_value"],
        }
        if type == 3:
            rows[name]["type3"] = flags[name]
    columns = ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p_value"] + (["type3"] if type == 3 else [])
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)
