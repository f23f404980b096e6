"""Inference on a fitted model: Satterthwaite and Kenward–Roger tests, marginal means,
intervals, likelihood-ratio tests, the bootstrap; one module each, imported when used
(:func:`lmmfast.anova` is ``lmmfast.inference.anova.anova``)."""
