"""Small models side by side with the Python peers installed next to lmmfast.

Times ``lmm`` (set-up and fit) called again on the same data (it reuses the model it
prepared) and preparing anew (``lmm new``: the store of recent models off), a prepared
model's fit to other data of the same columns (``lmmfast.LinearMixedModel(...).fit(data)``),
``fit.refit(y)`` and a bootstrap replicate against mixedlm's
and lme_python's ``lmer`` on the small reference designs, warm, one process, medians of
``--repeat`` calls, all in one run (this machine is shared and noisy: compare within a run).
Peers that are not importable are skipped with a note. Objectives are printed beside the
times so that equal work is compared.

    python benchmarks/compare_peers.py [--repeat 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

CASES = {
    "sleepstudy": "Reaction ~ Days + (Days | Subject)",
    "penicillin": "diameter ~ 1 + (1 | plate) + (1 | sample)",
    "dyestuff": "Yield ~ 1 + (1 | Batch)",
    "pastes": "strength ~ 1 + (1 | batch/cask)",
}


def median_seconds(call: Callable[[], Any], repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (one, as the peers' comparisons)")
    arguments = parser.parse_args()
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(arguments.threads))

    import lmmfast

    warnings.simplefilter("ignore", lmmfast.SingularFitWarning)  # pastes' refits are singular
    peers = {}
    for name in ("mixedlm", "lme_python"):
        try:
            peers[name] = importlib.import_module(name)
        except ImportError:
            print(f"# {name} is not installed here: skipped")
    print("case        what       lmmfast_ms  " + "  ".join(f"{name}_ms" for name in peers) + "  objectives")
    for case, formula in CASES.items():
        data = lmmfast.datasets.load(case)
        fit = lmmfast.lmm(formula, data)
        row = [f"{1e3 * median_seconds(partial(lmmfast.lmm, formula, data), arguments.repeat):10.2f}"]
        objectives = [f"{fit.objective:.4f}"]
        for name, module in peers.items():
            peer_formula = formula
            if name == "lme_python":  # it does not expand the a/b shorthand
                peer_formula = formula.replace("batch/cask", "batch) + (1 | batch:cask")
            result = module.lmer(peer_formula, data)
            row.append(f"{1e3 * median_seconds(partial(module.lmer, peer_formula, data), arguments.repeat):10.2f}")
            objectives.append(_objective(result))
        print(f"{case:<11} lmm        {'  '.join(row)}  {' '.join(objectives)}")
        previous = lmmfast.set_options(model_cache=0)
        print(
            f"{case:<11} lmm new    {1e3 * median_seconds(partial(lmmfast.lmm, formula, data), arguments.repeat):10.2f}"
        )
        lmmfast.set_options(**previous)
        model, other_data = lmmfast.LinearMixedModel(formula, data), data.copy()
        print(f"{case:<11} model.fit  {1e3 * median_seconds(partial(model.fit, other_data), arguments.repeat):10.2f}")
        y = fit.simulate(1, seed=1)[:, 0]
        print(f"{case:<11} refit      {1e3 * median_seconds(partial(fit.refit, y), arguments.repeat):10.2f}")
        began = time.perf_counter()
        fit.bootstrap(200, seed=1)
        print(f"{case:<11} bootstrap  {1e3 * (time.perf_counter() - began) / 200:10.2f}  (ms a replicate)")


def _objective(result: Any) -> str:
    for attribute in ("deviance", "objective", "REMLcrit", "reml_criterion"):
        value = getattr(result, attribute, None)
        if callable(value):
            try:
                value = value()
            except TypeError:
                continue
        if isinstance(value, (int, float)):
            return f"{float(value):.4f}"
    return "?"


if __name__ == "__main__":
    main()
