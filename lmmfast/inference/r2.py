"""Nakagawa's R² and the intraclass correlation of a mixed model (performance's
``r2_nakagawa`` and ``icc``, random slopes included as Johnson 2014 extends them).

With σ²_f the variance of the fixed-effects predictions Xβ̂, σ²_r the random effects' variance
averaged over the observations (for each term, the mean of zᵢ'Σzᵢ over its rows zᵢ, Σ the term's
covariance) and σ²_ε the residual variance (for a generalized model, the distribution's on the
link scale: π²/3 for the logit),

    R²_marginal = σ²_f / (σ²_f + σ²_r + σ²_ε),   R²_conditional = (σ²_f + σ²_r) / (…),
    ICC_adjusted = σ²_r / (σ²_r + σ²_ε),          ICC_unadjusted = σ²_r / (σ²_f + σ²_r + σ²_ε).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def variance_parts(fit: Any, residual_variance: float) -> tuple[float, float, float]:
    """(σ²_f, σ²_r, σ²_ε) of a fitted model whose random-effects covariances are
    ``scale² T T'`` (scale σ for linear models, 1 for generalized ones)."""
    model = fit.model
    model.require_rows("R² and the variance parts of the fixed effects")
    fixed = float(np.var(model.fixed.X @ fit.beta, ddof=1)) if len(fit.beta) else 0.0
    scale = 1.0 if fit.residual_sd is None else fit.residual_sd
    random = 0.0
    for term, result in zip(model.terms, fit.terms):
        covariance = scale**2 * result.template @ result.template.T
        random += float(np.mean(np.einsum("ij,jk,ik->i", term.values, covariance, term.values)))
    return fixed, random, residual_variance


def r2_and_icc(fit: Any, residual_variance: float) -> dict[str, float]:
    """``marginal`` and ``conditional`` R², ``icc_adjusted`` and ``icc_unadjusted``.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> {k: round(v, 3) for k, v in r2_and_icc(fit, fit.sigma**2).items()}
    {'marginal': 0.279, 'conditional': 0.799, 'icc_adjusted': 0.722, 'icc_unadjusted': 0.521}
    """
    fixed, random, residual = variance_parts(fit, residual_variance)
    total = fixed + random + residual
    return {
        "marginal": fixed / total,
        "conditional": (fixed + random) / total,
        "icc_adjusted": random / (random + residual),
        "icc_unadjusted": random / total,
    }
