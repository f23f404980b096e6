"""Fit time and peak memory: bundled datasets × formulas, and synthetic crossed designs.

The timed call is one whole fit on data already in memory (docs/performance.md); setup fits once
so that numba's cache is warm. Synthetic designs above 1M rows run only when
``LMMFAST_BENCH_LARGE=1`` (they take minutes).
"""

from __future__ import annotations

import warnings

import lmmfast
from lmmfast_benchmarks import only_if_large

warnings.simplefilter("ignore", lmmfast.LmmfastWarning)

CASES = {
    "dyestuff": ("dyestuff", "Yield ~ 1 + (1 | Batch)", True),
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True),
    "penicillin": ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
    "insteval": ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", False),
    "kb07_m6": ("kb07", "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1|subj) + (1+P|item)", False),
    "kb07_zcp": (
        "kb07",
        "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1+S+P+C+SP+SC+PC+SPC||subj) + (1+S+P+C+SP+SC+PC+SPC||item)",
        False,
    ),
    "kb07_slopes20": ("kb07", "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1+S+P+C|subj) + (1+S+P+C|item)", False),
}


class BundledFits:
    params = list(CASES)
    param_names = ["case"]
    timeout = 600

    def setup(self, case: str) -> None:
        dataset, self.formula, self.reml = CASES[case]
        self.data = lmmfast.datasets.load(dataset)
        lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))

    def time_fit(self, case: str) -> None:
        lmmfast.lmm(self.formula, self.data, reml=self.reml)

    def peakmem_fit(self, case: str) -> None:
        lmmfast.lmm(self.formula, self.data, reml=self.reml)

    def track_evaluations(self, case: str) -> int:
        return lmmfast.lmm(self.formula, self.data, reml=self.reml).n_evals

    def time_fit_bobyqa(self, case: str) -> None:
        """The derivative-free optimiser on every case, for comparison with ``time_fit``."""
        lmmfast.lmm(self.formula, self.data, reml=self.reml, optimizer="bobyqa")

    def track_evaluations_bobyqa(self, case: str) -> int:
        return lmmfast.lmm(self.formula, self.data, reml=self.reml, optimizer="bobyqa").n_evals


SYNTHETIC = {
    "100k": (500, 2000, 200),
    "1M": (5000, 2000, 200),
    "10M": (50000, 2000, 200),
}


class SyntheticCrossed:
    """``y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)`` by ML."""

    params = list(SYNTHETIC)
    param_names = ["rows"]
    timeout = 3600
    number = 1
    repeat = 1

    def setup(self, rows: str) -> None:
        only_if_large(rows != "100k", "the million-row designs")
        self.data = lmmfast.datasets.simulate_crossed(*SYNTHETIC[rows], seed=1)

    def time_fit(self, rows: str) -> None:
        lmmfast.lmm("y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)", self.data, reml=False)

    def peakmem_fit(self, rows: str) -> None:
        lmmfast.lmm("y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)", self.data, reml=False)


class CrossedIntercepts:
    """``y ~ cond + freq + (1 | subj) + (1 | item)`` by ML where both factors are large:
    200,000 subjects with 3 items each, of 2,000 items (the blocked path); of 20,000 items,
    drawn uniformly or with power-law popularity (the CHOLMOD path), only with
    ``LMMFAST_BENCH_LARGE=1``."""

    params = ["2k items", "20k items", "20k items, power law"]
    param_names = ["design"]
    timeout = 3600
    number = 1
    repeat = 1

    def setup(self, design: str) -> None:
        only_if_large(design != "2k items", "the 20,000-item designs")
        items = 2_000 if design == "2k items" else 20_000
        popularity = 1.0 if "power law" in design else 0.0
        self.data = lmmfast.datasets.simulate_crossed(200_000, items, 3, slopes=False, popularity=popularity, seed=1)
        self.fit()  # numba's kernels load from the cache outside the timings

    def fit(self) -> lmmfast.LmmResult:
        return lmmfast.lmm("y ~ cond + freq + (1 | subj) + (1 | item)", self.data, reml=False)

    def time_fit(self, design: str) -> None:
        self.fit()

    def peakmem_fit(self, design: str) -> None:
        self.fit()

    def track_evaluations(self, design: str) -> int:
        return self.fit().n_evals


class EvaluationCost:
    """One objective evaluation for a fixed set of levels: constant in the number of rows."""

    params = [1, 4, 16]
    param_names = ["trials_per_item"]

    def setup(self, trials: int) -> None:
        from lmmfast.api import prepare

        data = lmmfast.datasets.simulate_crossed(300, 100, 50, trials_per_item=trials, seed=2)
        self.prepared = prepare("y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)", data, reml=False)
        self.theta = self.prepared.layout.start
        # first calls load the numba kernels from the cache: keep them out of the timings
        self.prepared.objective(self.theta)
        self.prepared.objective.value_and_gradient(self.theta)

    def time_objective(self, trials: int) -> None:
        self.prepared.objective(self.theta)

    def time_objective_and_gradient(self, trials: int) -> None:
        self.prepared.objective.value_and_gradient(self.theta)


class ColdStart:
    """Import and first fit in a fresh interpreter (numba's on-disk cache warm)."""

    timeout = 300

    def timeraw_import_and_first_fit(self) -> str:
        return """
import lmmfast
lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
"""
