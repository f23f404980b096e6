"""Where a generalized fit's first stage starts.

lme4 starts θ at its identity templates (every standard deviation 1). The linear mixed
model of the working response at the GLM's fit — the one PIRLS's first iteration solves —
says more: its moment estimates of θ (:func:`lmmfast.start.initial_theta`, from the
cross-products at the GLM's working weights, one pass over the rows) start most models
near their optimum, where the first stage needs about half the evaluations it needs from
lme4's start (docs/performance.md). Where the estimator fails — an observation-level term
leaves no variation within levels, and grouseticks' moments put a standard deviation at the
cap of 10 — lme4's start is kept, and is there the better one.
"""

from __future__ import annotations

import numpy as np

from lmmfast.crossprod import form_weighted_cross_products
from lmmfast.errors import ModelError
from lmmfast.generalized.deviance import GlmmDeviance
from lmmfast.generalized.prepare import PreparedGlmm
from lmmfast.start import START_RANGE, initial_theta


def moment_theta(prepared: PreparedGlmm, deviance: GlmmDeviance) -> np.ndarray:
    """Moment estimates of θ for the linear mixed model of the working response at the
    GLM's fit, weighted by its working weights (the dispersion being 1, θ needs no σ).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.generalized.family import Family
    >>> from lmmfast.generalized.prepare import prepare_glmm
    >>> model = prepare_glmm("r2 ~ Anger + btype + (1 | id) + (1 | item)", lmmfast.datasets.load("verbagg"),
    ...                      Family("binomial"))
    >>> moment_theta(model, model.deviance.fresh()).round(2).tolist()
    [1.23, 0.7]
    """
    pirls = deviance.pirls
    rows = pirls.buffers
    rows.eta[:] = prepared.start_eta
    pirls.evaluate_rows(rows.eta)
    working = rows.eta - pirls.response.offset + rows.working_residuals
    cross_products = form_weighted_cross_products(pirls.pattern, pirls.X, working, rows.root_weights)
    return initial_theta(prepared.layout, prepared.terms, cross_products, prepared.engine.blocks, slopes=True)


def first_stage_start(prepared: PreparedGlmm, deviance: GlmmDeviance) -> np.ndarray:
    """The moment estimates (:func:`moment_theta`), or lme4's start where the estimator
    failed (a standard deviation at its cap, ``START_RANGE``'s upper end: a term with a level
    per observation, or no variation left within levels) or PIRLS fails at them. PIRLS is
    run at the start from the GLM's fit, as glmer's first evaluation is, so that the first
    stage's first evaluation finds it there.

    Raises
    ------
    ModelError
        Where PIRLS fails at lme4's start (the model's own trouble: separation, mostly).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.generalized.family import Family
    >>> from lmmfast.generalized.prepare import prepare_glmm
    >>> model = prepare_glmm("r2 ~ Anger + btype + (1 | id) + (1 | item)", lmmfast.datasets.load("verbagg"),
    ...                      Family("binomial"))
    >>> first_stage_start(model, model.deviance.fresh()).round(2).tolist()
    [1.23, 0.7]
    """
    layout = prepared.layout
    moments = moment_theta(prepared, deviance)
    reliable = np.all(np.isfinite(moments)) and np.all(moments[layout.is_diagonal] < START_RANGE[1])
    if reliable:
        try:
            deviance.fast(moments, eta=prepared.start_eta)
            return moments
        except ModelError:
            pass
    deviance.fast(layout.start, eta=prepared.start_eta)
    return layout.start
