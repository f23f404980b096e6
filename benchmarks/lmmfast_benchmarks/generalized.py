"""Generalized fits (glmer's cases): fit time, peak memory and evaluations; one Laplace
deviance evaluation on a crossed Bernoulli design; the 1M-row Bernoulli design of the
generalized-models issue only with ``LMMFAST_BENCH_LARGE=1``."""

from __future__ import annotations

import warnings

import numpy as np

import lmmfast
from lmmfast.recent import DEFAULT_SIZE
from lmmfast_benchmarks import only_if_large

warnings.simplefilter("ignore", lmmfast.LmmfastWarning)

CASES = {
    "cbpp": ("cbpp", "prop ~ period + (1 | herd)", "binomial", 1, "size"),
    "verbagg": ("verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial", 1, None),
    "verbagg_fast": ("verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial", 0, None),
    "grouseticks": (
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
        1,
        None,
    ),
    "contraception": (
        "contraception",
        "use ~ age + age2 + urban + livch + (1 + urban | district)",
        "binomial",
        1,
        None,
    ),
}


class GeneralizedFits:
    params = list(CASES)
    param_names = ["case"]
    timeout = 600

    def setup(self, case: str) -> None:
        dataset, self.formula, self.family, self.nagq, self.weights = CASES[case]
        self.data = lmmfast.datasets.load(dataset)
        # every fit prepares its model, as glmer does: the store of recent models would
        # answer the repeated calls of small data instead
        lmmfast.set_options(model_cache=0)
        self.fit()  # numba's kernels load from the cache outside the timings

    def teardown(self, case: str) -> None:
        lmmfast.set_options(model_cache=DEFAULT_SIZE)

    def fit(self) -> lmmfast.GlmmResult:
        return lmmfast.glmm(self.formula, self.data, self.family, nagq=self.nagq, weights=self.weights)

    def time_fit(self, case: str) -> None:
        self.fit()

    def peakmem_fit(self, case: str) -> None:
        self.fit()

    def track_evaluations(self, case: str) -> int:
        return self.fit().n_evals


class LaplaceEvaluation:
    """One Laplace deviance evaluation (PIRLS from the last modes) on 100k crossed Bernoulli rows."""

    def setup(self) -> None:
        from lmmfast.generalized.family import Family
        from lmmfast.generalized.prepare import prepare_glmm

        data = lmmfast.datasets.simulate_crossed(500, 2000, 200, family="binomial", seed=1)
        model = prepare_glmm("y ~ cond + freq + (1 + cond | subj) + (1 | item)", data, Family("binomial"))
        self.deviance = model.deviance.fresh()
        theta = np.array([0.8, 0.1, 0.3, 0.48])
        self.deviance.fast(theta, eta=model.start_eta)
        self.point = np.r_[theta, self.deviance.last_beta]
        self.deviance(self.point)
        self.step = 0

    def time_laplace(self) -> None:
        self.step += 1
        self.deviance(self.point + 1e-4 * (self.step % 3))


class CrossedBernoulli:
    """``y ~ cond + freq + (1 + cond | subj) + (1 | item)``, Laplace, on simulate_crossed's Bernoulli design."""

    params = ["100k", "1M"]
    param_names = ["rows"]
    timeout = 3600
    number = 1
    repeat = 1

    def setup(self, rows: str) -> None:
        only_if_large(rows != "100k", "the million-row design")
        subjects = 500 if rows == "100k" else 5000
        self.data = lmmfast.datasets.simulate_crossed(subjects, 2000, 200, family="binomial", seed=1)

    def time_fit(self, rows: str) -> None:
        lmmfast.glmm("y ~ cond + freq + (1 + cond | subj) + (1 | item)", self.data)

    def peakmem_fit(self, rows: str) -> None:
        lmmfast.glmm("y ~ cond + freq + (1 + cond | subj) + (1 | item)", self.data)
