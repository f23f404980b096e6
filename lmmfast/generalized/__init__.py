"""Generalized linear mixed models (binomial and Poisson responses), as lme4's ``glmer``.

The pipeline, each module using only those listed after it: :mod:`~lmmfast.generalized.result`
(the fit's numbers and methods) ← :mod:`~lmmfast.generalized.fit` (the two optimisation stages and
the standard errors) ← :mod:`~lmmfast.generalized.prepare` ← :mod:`~lmmfast.generalized.deviance`
(Laplace, fast, quadrature) ← :mod:`~lmmfast.generalized.pirls` ← :mod:`~lmmfast.generalized.reweight`
(the pass over the rows) ← :mod:`~lmmfast.generalized.response` ← :mod:`~lmmfast.generalized.family`.
"""
