"""Many fits: many responses on one design (``lmm_many``), small models, refits, bootstrap, power."""

from __future__ import annotations

import numpy as np
import pandas as pd

import lmmfast

RESPONSES = 1000


class ManyResponses:
    timeout = 600
    number = 1
    repeat = 1
    params = [1, 2]
    param_names = ["processes"]

    def setup(self, processes: int) -> None:
        data = lmmfast.datasets.load("sleepstudy")
        noise = np.random.default_rng(1).normal(0.0, 25.0, (len(data), RESPONSES))
        columns = [f"y{i}" for i in range(RESPONSES)]
        responses = pd.DataFrame(data.Reaction.to_numpy()[:, None] + noise, columns=columns)
        self.data = pd.concat([data, responses], axis=1)
        self.names = columns
        lmmfast.lmm_many("~ Days + (Days | Subject)", self.data, self.names[:3])  # numba's kernels loaded

    def time_lmm_many(self, processes: int) -> None:
        lmmfast.lmm_many("~ Days + (Days | Subject)", self.data, self.names, processes=processes)


class SmallFits:
    """Small models warm, one process: ``lmm`` called again on the same data (reusing the model
    it prepared) and preparing anew (the store of recent models off), the fit of a prepared
    model (:class:`lmmfast.LinearMixedModel`) to other data of the same columns, a refit to
    a new response from θ̂, and parametric bootstrap replicates (sleepstudy; penicillin,
    dyestuff)."""

    params = ["sleepstudy", "penicillin", "dyestuff"]
    param_names = ["case"]
    FORMULAS = {
        "sleepstudy": "Reaction ~ Days + (Days | Subject)",
        "penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
        "dyestuff": "Yield ~ 1 + (1 | Batch)",
    }

    def setup(self, case: str) -> None:
        self.formula = self.FORMULAS[case]
        self.data = lmmfast.datasets.load(case)
        self.fit = lmmfast.lmm(self.formula, self.data, checks={"singular": "ignore"})
        self.y = self.fit.simulate(1, seed=1)[:, 0]
        self.fit.refit(self.y)
        self.model = lmmfast.LinearMixedModel(self.formula, self.data)
        self.other_data = self.data.copy()

    def time_lmm(self, case: str) -> None:
        lmmfast.lmm(self.formula, self.data, checks={"singular": "ignore"})

    def time_lmm_preparing_anew(self, case: str) -> None:
        previous = lmmfast.set_options(model_cache=0)
        lmmfast.lmm(self.formula, self.data, checks={"singular": "ignore"})
        lmmfast.set_options(**previous)

    def time_prepared_model_fit(self, case: str) -> None:
        self.model.fit(self.other_data, checks={"singular": "ignore"})

    def time_refit(self, case: str) -> None:
        self.fit.refit(self.y)

    def time_bootstrap_100(self, case: str) -> None:
        self.fit.bootstrap(100, seed=1)


class LargeBootstrap:
    """Parametric bootstrap of InstEval (73,421 rows, three crossed intercepts, ML): 40
    replicates in one process, each a refit from θ̂ with the Hessian measured there (once per
    call). The target: 5 replicates a second on one core."""

    timeout = 300
    number = 1
    repeat = 3

    def setup(self) -> None:
        formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"
        self.fit = lmmfast.lmm(formula, lmmfast.datasets.load("insteval"), reml=False)
        self.fit.bootstrap(8, seed=0)  # numba's kernels loaded

    def time_bootstrap_40(self) -> None:
        self.fit.bootstrap(40, seed=1)


class NewProcess:
    """A new process, as the command line or a tool's subprocess starts one, once numba's
    compiled cache is written: ``import lmmfast``; the import and a first sleepstudy fit (the
    target: 1 s); the ``lmmfast`` command fitting it (the target: 1.5 s). Each sample is a
    process of its own (asv's ``timeraw_``)."""

    repeat = 5

    def setup(self) -> None:
        # numba's compiled cache, written here where a fresh installation has none yet
        lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))

    def timeraw_import(self) -> str:
        return "import lmmfast"

    def timeraw_first_fit(self) -> str:
        return """
        import lmmfast
        lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        """

    def timeraw_command_line(self) -> tuple[str, str]:
        command = '[sys.executable, "-m", "lmmfast", "fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)"]'
        return f"subprocess.run({command}, check=True, capture_output=True)", "import subprocess, sys"


class PowerSimulation:
    """``lmmfast.power``: 200 simulations of a 60-row cluster-randomised design by each test."""

    timeout = 300
    params = ["lr", "wald", "satterthwaite"]
    param_names = ["method"]

    def setup(self, method: str) -> None:
        design = pd.DataFrame(
            {
                "cluster": np.repeat([f"c{j:02d}" for j in range(12)], 5),
                "treat": np.repeat(np.arange(12) % 2, 5).astype(float),
            }
        )
        self.spec = lmmfast.model_spec(
            "y ~ treat + (1 | cluster)",
            design,
            fixef={"Intercept": 0.0, "treat": 1.5},
            sigma=1.0,
            varcorr={"cluster": 1.0},
        )
        lmmfast.power(self.spec, "treat", nsim=2, method=method, seed=1)

    def time_power_200(self, method: str) -> None:
        lmmfast.power(self.spec, "treat", nsim=200, method=method, seed=1)
