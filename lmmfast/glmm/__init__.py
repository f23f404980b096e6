"""Generalized linear mixed models (binomial and Poisson responses), as lme4's ``glmer``.

The pipeline, each module using only those listed after it: :mod:`~lmmfast.glmm.result`
(the fit's numbers and methods) ← :mod:`~lmmfast.glmm.fit` (the two optimisation stages and
the standard errors) ← :mod:`~lmmfast.glmm.prepare` ← :mod:`~lmmfast.glmm.deviance`
(Laplace, fast, quadrature) ← :mod:`~lmmfast.glmm.pirls` ← :mod:`~lmmfast.glmm.reweight`
(the pass over the rows) ← :mod:`~lmmfast.glmm.response` ← :mod:`~lmmfast.glmm.family`.
"""
