"""Conditional variances of the random effects (lme4's ``ranef(m, condVar = TRUE)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmmfast.design.amalgamate import EngineTerms
from lmmfast.factor.base import RandomEffectsFactor

if TYPE_CHECKING:
    from lmmfast.result import LmmFit, RandomTermResult

#: Unit vectors solved per batch: bounds the work array at q × CHUNK doubles.
CHUNK = 256


def conditional_covariances(fit: LmmFit) -> list[np.ndarray]:
    """Per term (lme4's order), an array (n_levels, k, k): Var(b | y) = σ² Λ [M⁻¹]_level Λ'
    with M = Λ'Z'ZΛ + I, from solves with the factor at θ̂ (q solves in all).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> conditional_covariances(fit)[0].shape
    (6, 1, 1)
    """
    objective = fit.model.objective
    objective.factor.update(fit.theta)
    return covariance_blocks(
        objective.factor, objective.cross_products.column_offsets, fit.model.engine, fit.terms, fit.sigma
    )


def covariance_blocks(
    factor: RandomEffectsFactor,
    column_offsets: np.ndarray,
    engine: EngineTerms,
    terms: Sequence[RandomTermResult],
    scale: float,
) -> list[np.ndarray]:
    """Per term, scale² Λ [M⁻¹]_level Λ' for every level, from a ``factor`` of M already
    updated at the fit's θ (and, for a generalized model, its weights at the modes): from the
    factor's selected inverse where it has one, else from q solves."""
    # the diagonal blocks of M⁻¹ per engine term (terms on one factor are merged there)
    engine_blocks = factor.inverse_diagonal_blocks() or _solved_diagonal_blocks(factor, column_offsets, engine)
    blocks = []
    for (holder, first), result in zip(engine.blocks, terms):
        k = len(result.columns)
        inverse_blocks = engine_blocks[holder][:, first : first + k, first : first + k]
        template = result.template
        blocks.append(scale**2 * np.einsum("ij,ljk,mk->lim", template, inverse_blocks, template))
    return blocks


def _solved_diagonal_blocks(
    factor: RandomEffectsFactor, column_offsets: np.ndarray, engine: EngineTerms
) -> list[np.ndarray]:
    """The diagonal blocks of M⁻¹ per engine term, from solves with unit vectors."""
    q = int(sum(size * engine.model_terms[group[0]].n_levels for size, group in zip(engine.sizes, engine.groups)))
    engine_blocks = []
    for index, (k, group) in enumerate(zip(engine.sizes, engine.groups)):
        levels, start = engine.model_terms[group[0]].n_levels, int(column_offsets[index])
        inverse_blocks = np.empty((levels, k, k))
        columns = np.arange(start, start + levels * k)
        for first in range(0, len(columns), CHUNK):
            batch = columns[first : first + CHUNK]
            unit = np.zeros((q, len(batch)))
            unit[batch, np.arange(len(batch))] = 1.0
            solved = factor.solve_Lt(factor.solve_L(unit))
            for local, column in enumerate(batch):
                level, j = divmod(int(column - start), k)
                inverse_blocks[level, :, j] = solved[start + level * k : start + level * k + k, local]
        engine_blocks.append(inverse_blocks)
    return engine_blocks


def ranef_rows(terms: Sequence[RandomTermResult], covariances: Sequence[np.ndarray]) -> pd.DataFrame:
    """The table of :func:`ranef_table` from the terms and their conditional covariances."""
    rows = []
    for result, covariance in zip(terms, covariances):
        sd = np.sqrt(np.maximum(np.diagonal(covariance, axis1=1, axis2=2), 0.0))
        for j, column in enumerate(result.columns):
            rows.append(
                pd.DataFrame(
                    {
                        "grpvar": result.group,
                        "term": column,
                        "grp": result.levels,
                        "condval": result.modes[:, j],
                        "condsd": sd[:, j],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def ranef_table(fit: LmmFit) -> pd.DataFrame:
    """Conditional modes with their conditional standard deviations, one row per level and
    column — ready for a caterpillar plot (R's ``as.data.frame(ranef(m, condVar = TRUE))``).

    Columns ``grpvar, term, grp, condval, condsd``.
    """
    return ranef_rows(fit.terms, conditional_covariances(fit))


def variance_decomposition(fit: LmmFit) -> pd.DataFrame:
    """Each variance component's share of the total variance (the variances of the random
    effects' columns plus the residual variance); for random-intercept models the shares of
    the grouping factors are their intraclass correlations.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> round(float(variance_decomposition(fit).proportion[0]), 3)
    0.418
    """
    vc = fit.varcorr
    variances = vc[vc.var2.isna()].reset_index(drop=True)[["grp", "var1", "vcov"]]
    variances = variances.assign(proportion=variances.vcov / variances.vcov.sum())
    return variances
