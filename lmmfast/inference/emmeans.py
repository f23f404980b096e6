"""Estimated marginal means and their contrasts, as R's emmeans computes them.

The reference grid crosses every level of every factor of the fixed part, with each numeric
predictor at its mean; a marginal mean is the prediction averaged with equal weights over the
factors not asked for. Each is a linear combination ℓ'β̂ of the fixed effects, so its standard
error is √(ℓ'Φℓ) and its df Satterthwaite's or Kenward–Roger's for ℓ — the grid has as many
rows as factor combinations, never the data's n.

Contrasts between the means (pairwise, against a control, consecutive, or any matrix) are
tested within each ``by`` group, with emmeans' multiplicity adjustments: Tukey's studentized
range, Holm, Bonferroni, Šidák, and emmeans' approximation to Dunnett's (``dunnettx``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.design.newdata import column_of
from lmmfast.design.variables import formula_variables
from lmmfast.distributions import f_cdf, t_quantile, t_sf
from lmmfast.errors import ArgumentError
from lmmfast.validation import check_choice, check_level

#: Contrast methods of :meth:`MarginalMeans.contrasts`.
CONTRAST_METHODS = ("pairwise", "revpairwise", "trt.vs.ctrl", "consec")

#: Multiplicity adjustments (emmeans' names).
ADJUSTMENTS = ("tukey", "holm", "bonferroni", "sidak", "dunnettx", "none")

#: The name of a back-transformed contrast, per link whose differences back-transform to ratios.
RATIO_NAMES = {"logit": "odds_ratio", "log": "ratio"}

#: Each method's default adjustment: emmeans' where it has one here (consecutive and custom
#: contrasts get Holm's, where emmeans uses the multivariate t).
DEFAULT_ADJUSTMENT = {"pairwise": "tukey", "revpairwise": "tukey", "trt.vs.ctrl": "dunnettx", "consec": "holm"}


@dataclass(frozen=True)
class MarginalMeans:
    """Estimated marginal means (``fit.emmeans(...)``): :attr:`table` and :meth:`contrasts`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per combination of the ``specs`` factors (the first varying fastest) within
        each ``by`` group: the factors' levels, ``emmean, std_error, df, lower, upper``.
    specs, by : tuple of str
    ddf : str
    level : float
    weights : numpy.ndarray
        ℓ per row of :attr:`table` (rows × fixed effects).

    For a generalized fit's means on the response scale (``type="response"``) the table's
    mean column is ``prob`` (binomial) or ``rate`` (Poisson), with delta-method standard
    errors and the link scale's limits back-transformed; their contrasts are odds ratios
    (logit link) or ratios (log link), tested on the link scale, as emmeans does.
    """

    table: pd.DataFrame
    specs: tuple[str, ...]
    by: tuple[str, ...]
    ddf: str
    level: float
    weights: np.ndarray
    beta: np.ndarray
    covariance: np.ndarray
    contrast_df: Callable[[np.ndarray], float]
    #: A generalized fit's link where the means are on the response scale (None: as fitted).
    response_link: str | None = None

    def __repr__(self) -> str:
        return (
            f"{self.table.to_string(index=False)}\n\n"
            f"Degrees of freedom: {self.ddf}; confidence level {self.level:g}; "
            f"averaged over the factors not shown, numeric predictors at their means"
        )

    def _repr_html_(self) -> str:
        return str(self.table.to_html(index=False))

    def contrasts(
        self, method: str | np.ndarray | pd.DataFrame = "pairwise", adjust: str | None = None
    ) -> pd.DataFrame:
        """Contrasts between the means within each ``by`` group, with t tests (z tests,
        ``z_ratio``, for a generalized fit's asymptotic inference).

        Parameters
        ----------
        method : {"pairwise", "revpairwise", "trt.vs.ctrl", "consec"} or matrix
            Every pair (first minus second; ``revpairwise`` the reverse), each level against
            the first, each level against the one before; or a matrix with one column per mean
            of a group (a DataFrame's index names the contrasts).
        adjust : {"tukey", "holm", "bonferroni", "sidak", "dunnettx", "none"}, optional
            The multiplicity adjustment within each group (default: Tukey for pairwise
            comparisons, ``dunnettx`` against a control, Holm otherwise).

        Returns
        -------
        pandas.DataFrame
            ``contrast`` (and the ``by`` factors), ``estimate, std_error, df, t_ratio, p_value``.
        """
        coefficients, names = _contrast_matrix(method, self._labels())
        default = DEFAULT_ADJUSTMENT.get(method, "holm") if isinstance(method, str) else "holm"
        adjust = check_choice("adjust", default if adjust is None else adjust, ADJUSTMENTS)
        if adjust == "tukey" and method not in ("pairwise", "revpairwise"):
            raise ArgumentError(
                "adjust='tukey' is for pairwise comparisons (the studentized range of all the means); "
                "choose 'sidak', 'holm', 'bonferroni' or 'dunnettx' for these contrasts."
            )
        rows = []
        size = self._group_size()
        for start in range(0, len(self.table), size):
            group = self.table.iloc[start : start + size]
            weights = coefficients @ self.weights[start : start + size]
            estimate = weights @ self.beta
            std_error = np.sqrt(np.einsum("ij,jk,ik->i", weights, self.covariance, weights))
            df = np.array([self.contrast_df(w) for w in weights])
            t_ratio = estimate / std_error
            p_value = _adjusted(t_ratio, df, adjust, size, len(names))
            frame = pd.DataFrame(
                {"contrast": names, "estimate": estimate, "std_error": std_error, "df": df}
                | {"z_ratio" if self.ddf == "asymptotic" else "t_ratio": t_ratio, "p_value": p_value}
            )
            if self.response_link in RATIO_NAMES and isinstance(method, str):
                # differences of logits (logs) are log odds ratios (log ratios): back-transformed
                ratio = np.exp(estimate)
                frame = frame.assign(contrast=[n.replace(" - ", " / ") for n in names], estimate=ratio)
                frame = frame.assign(std_error=ratio * std_error)
                frame = frame.rename(columns={"estimate": RATIO_NAMES[self.response_link]})
            for position, name in enumerate(self.by, start=1):
                frame.insert(position, name, group[name].iloc[0])
            rows.append(frame)
        return pd.concat(rows, ignore_index=True)

    def _group_size(self) -> int:
        if not self.by:
            return len(self.table)
        return int(self.table.groupby(list(self.by), sort=False).size().iloc[0])

    def _labels(self) -> list[str]:
        """The means of one group, as emmeans labels them (the specs' levels, space-separated)."""
        first = self.table.iloc[: self._group_size()]
        return [" ".join(str(v) for v in row) for row in first[list(self.specs)].itertuples(index=False)]


def _contrast_matrix(method: str | np.ndarray | pd.DataFrame, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """The coefficients (contrasts × means of a group) and names of a method."""
    k = len(labels)
    if isinstance(method, str):
        check_choice("method", method, CONTRAST_METHODS)
        return _named(method, labels)
    names = list(method.index.astype(str)) if isinstance(method, pd.DataFrame) else None
    try:
        matrix = np.atleast_2d(np.asarray(method, dtype=np.float64))
    except (TypeError, ValueError):
        raise ArgumentError("method must be a contrast name or a numeric matrix with one column per mean.") from None
    if matrix.ndim != 2 or matrix.shape[1] != k or not np.all(np.isfinite(matrix)):
        raise ArgumentError(f"A contrast matrix needs one column per mean of a group ({k}), got shape {matrix.shape}.")
    return matrix, names or [f"c{i + 1}" for i in range(len(matrix))]


def _named(method: str, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    k = len(labels)
    pairs: list[tuple[int, int]]
    if method in ("pairwise", "revpairwise"):
        pairs = list(itertools.combinations(range(k), 2))
        if method == "revpairwise":
            pairs = [(j, i) for i, j in pairs]
    elif method == "trt.vs.ctrl":
        pairs = [(j, 0) for j in range(1, k)]
    else:
        pairs = [(j, j - 1) for j in range(1, k)]
    matrix = np.zeros((len(pairs), k))
    for row, (plus, minus) in enumerate(pairs):
        matrix[row, plus], matrix[row, minus] = 1.0, -1.0
    return matrix, [f"{labels[plus]} - {labels[minus]}" for plus, minus in pairs]


def _adjusted(t: np.ndarray, df: np.ndarray, adjust: str, means: int, tests: int) -> np.ndarray:
    """Two-sided p-values of the t ratios, adjusted for ``tests`` contrasts among ``means``."""
    raw = np.asarray(2.0 * t_sf(np.abs(t), df))
    if adjust == "none":
        return raw
    if adjust == "bonferroni":
        return np.minimum(1.0, tests * raw)
    if adjust == "sidak":
        return 1.0 - (1.0 - raw) ** tests
    if adjust == "tukey":
        from scipy import stats  # the studentized range only: scipy.stats is slow to import

        return stats.studentized_range.sf(np.sqrt(2.0) * np.abs(t), means, df)
    if adjust == "dunnettx":
        return np.array([1.0 - _dunnett_cdf(abs(v), tests, d) for v, d in zip(t, df)])
    order = np.argsort(raw)  # Holm's step-down
    stepped = np.maximum.accumulate((tests - np.arange(tests)) * raw[order])
    out = np.empty_like(raw)
    out[order] = np.minimum(1.0, stepped)
    return out


def _dunnett_cdf(x: float, k: int, df: float) -> float:
    """emmeans' approximation to Dunnett's distribution of the largest of k t ratios against
    one control: a mix of Tukey's with k' means (k' (k' − 1)/2 = k) and the Šidák bound."""
    from scipy import stats  # the studentized range only: scipy.stats is slow to import

    weight = (k - 1) / k
    tukey = stats.studentized_range.cdf(np.sqrt(2.0) * x, (1.0 + np.sqrt(1.0 + 8.0 * k)) / 2.0, df)
    sidak = f_cdf(x * x, 1, df) ** k
    return float(weight * tukey + (1.0 - weight) * sidak)


def factor_levels(fit: Any) -> dict[str, list[Any]]:
    """The levels of every factor of the fixed part, from formulaic's encoding (in its order)."""
    encoding = fit.encoding
    levels: dict[str, list[Any]] = {}
    for expression, (kind, state) in encoding.fixed_spec.encoder_state.items():
        if str(getattr(kind, "value", kind)) != "categorical":
            continue
        column = column_of(expression, encoding.column_kinds.keys())
        if column is not None:
            levels.setdefault(column, list(state.get("categories", [])))
    return levels


def marginal_means(
    fit: Any,
    specs: str | Sequence[str],
    by: str | Sequence[str] | None,
    *,
    ddf: str,
    level: float,
    covariance: np.ndarray,
    contrast_df: Callable[[np.ndarray], float],
    response: tuple[str, str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] | None = None,
) -> MarginalMeans:
    """The marginal means of ``specs`` within ``by`` (see :meth:`lmmfast.LmmResult.emmeans`),
    with standard errors from ``covariance`` and each mean's df from ``contrast_df``;
    ``response``: the family and link of a generalized fit whose means are wanted on the
    response scale, and η ↦ (μ, dμ/dη)."""
    level = check_level(level)
    specs, by = _names(specs, by)
    levels = factor_levels(fit)
    encoding = fit.encoding
    used = formula_variables(encoding.formula.fixed, "the fixed part", set(encoding.column_kinds))
    for name in (*specs, *by):
        if name not in levels:
            known = ", ".join(sorted(levels)) or "none"
            raise ArgumentError(
                f"{name!r} is not a factor of the fixed part (its factors: {known}); marginal means are over "
                "factors — a numeric predictor stays at its mean."
            )
    if len(set(specs) | set(by)) != len(specs) + len(by):
        raise ArgumentError("A factor cannot be both in specs and in by.")
    numeric = sorted(name for name in used if name not in levels and name != encoding.formula.response)
    means = encoding.numeric_means
    factors = [name for name in levels if name in used]
    grid = pd.DataFrame(list(itertools.product(*(levels[f] for f in factors))), columns=factors)
    for name in numeric:
        grid[name] = means[name]
    grid[encoding.formula.response] = 0.0
    X = encoding.X_for(grid)
    # rows: by groups in order, the first of specs varying fastest within them
    keys = [*by, *reversed(specs)]
    combos = list(itertools.product(*(levels[f] for f in keys)))
    weights = np.empty((len(combos), X.shape[1]))
    for row, combo in enumerate(combos):
        mask = np.ones(len(grid), dtype=bool)
        for name, value in zip(keys, combo):
            mask &= (grid[name] == value).to_numpy()
        weights[row] = X[mask].mean(axis=0)
    emmean = weights @ fit.beta
    std_error = np.sqrt(np.einsum("ij,jk,ik->i", weights, covariance, weights))
    df = np.array([contrast_df(w) for w in weights])
    half = t_quantile(0.5 + level / 2.0, df) * std_error
    table = pd.DataFrame(combos, columns=keys)[[*specs, *by]]
    lower, upper = emmean - half, emmean + half
    if response is None:
        table = table.assign(emmean=emmean, std_error=std_error, df=df, lower=lower, upper=upper)
        return MarginalMeans(table, specs, by, ddf, level, weights, fit.beta, covariance, contrast_df)
    family, link, inverse = response
    mean, derivative = inverse(emmean)
    table = table.assign(**{"prob" if family == "binomial" else "rate": mean})
    table = table.assign(std_error=derivative * std_error, df=df)
    table = table.assign(lower=inverse(lower)[0], upper=inverse(upper)[0])
    return MarginalMeans(table, specs, by, ddf, level, weights, fit.beta, covariance, contrast_df, link)


def _names(specs: str | Sequence[str], by: str | Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``specs`` and ``by`` as tuples of names; ``"a | b"`` is specs a within b."""

    def split(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(part.strip() for part in value.replace("*", "+").split("+") if part.strip())
        if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ArgumentError(f"{what} must be a factor's name or a list of names, got {type(value).__name__}.")

    if isinstance(specs, str) and "|" in specs:
        if by is not None:
            raise ArgumentError("Give the by factors either after '|' in specs or as by=, not both.")
        specs, by = specs.split("|", 1)
    names, groups = split(specs, "specs"), split(by, "by")
    if not names:
        raise ArgumentError("specs must name at least one factor.")
    return names, groups
