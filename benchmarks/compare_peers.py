"""Small models side by side with the Python peers installed next to lmmfast.

Times ``lmm`` (set-up and fit) called again on the same data (it reuses the model it
prepared) and preparing anew (``lmm new``: the store of recent models off), a prepared
model's fit to other data of the same columns (``lmmfast.LinearMixedModel(...).fit(data)``),
``fit.refit(y)`` and a bootstrap replicate against mixedlm's
and lme_python's ``lmer`` on the small reference designs, warm, one process, medians of
``--repeat`` calls, all in one run (this machine is shared and noisy: compare within a run).
Peers that are not importable are skipped with a note. Objectives are printed beside the
times so that equal work is compared.

    python benchmarks/compare_peers.py [--repeat 30] [--threads 1] [--cases small|all]
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

#: The small designs timed by default: dataset, formula, REML.
CASES = {
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True),
    "penicillin": ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
    "dyestuff": ("dyestuff", "Yield ~ 1 + (1 | Batch)", True),
    "pastes": ("pastes", "strength ~ 1 + (1 | batch/cask)", True),
}

#: With ``--cases all``, every reference case of fewer than 10,000 rows as well (the lme4
#: references' cases.tsv).
MORE_CASES = {
    "cake_interaction": ("cake", "angle ~ recipe * temp + (1 | recipe:replicate)", True),
    "dragons_intercept": ("dragons", "testScore ~ bodyLength2 + (1 | mountainRange)", True),
    "dragons_nested": ("dragons", "testScore ~ bodyLength2 + (1 | mountainRange/site)", True),
    "dyestuff2_singular": ("dyestuff2", "Yield ~ 1 + (1 | Batch)", True),
    "exam_slopes": ("exam", "normexam ~ standLRT + (standLRT | school)", True),
    "hsb82_crosslevel": ("hsb82", "mAch ~ meanses * cses + sx + minrty + (cses | school)", True),
    "kb07_m6": ("kb07", "RTtrunc ~ 1 + S + P + C + SP + SC + PC + SPC + (1 | subj) + (1 + P | item)", False),
    "machines_nested": ("machines", "score ~ Machine + (1 | Worker/Machine)", True),
    "orthodont_slopes": ("orthodont", "distance ~ age * Sex + (age | Subject)", True),
    "sleepstudy_intercept_ml": ("sleepstudy", "Reaction ~ Days + (1 | Subject)", False),
    "sleepstudy_slopes_ml": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", False),
    "sleepstudy_uncorr": ("sleepstudy", "Reaction ~ Days + (Days || Subject)", True),
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
    parser.add_argument("--cases", default="small", choices=["small", "all"], help="all: every small reference case")
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
    print(
        "case                     what       lmmfast_ms  " + "  ".join(f"{name}_ms" for name in peers) + "  objectives"
    )
    cases = CASES if arguments.cases == "small" else {**CASES, **MORE_CASES}
    for case, (dataset, formula, reml) in cases.items():
        data = lmmfast.datasets.load(dataset)
        fit = lmmfast.lmm(formula, data, reml=reml)
        lmm = partial(lmmfast.lmm, formula, data, reml=reml)
        row = [f"{1e3 * median_seconds(lmm, arguments.repeat):10.2f}"]
        objectives = [f"{fit.objective:.4f}"]
        for name, module in peers.items():
            peer_formula = formula
            if name == "lme_python":  # it does not expand the a/b shorthand
                for nested in ("batch/cask", "mountainRange/site", "Worker/Machine"):
                    outer, inner = nested.split("/")
                    peer_formula = peer_formula.replace(nested, f"{outer}) + (1 | {outer}:{inner}")
            keyword = {"REML": reml} if name == "mixedlm" else {"reml": reml}
            call = partial(module.lmer, peer_formula, data, **keyword)
            try:
                result = call()
            except Exception as error:  # noqa: BLE001 - a peer that cannot fit the formula: say so, go on
                row.append(f"{'failed':>10s}")
                objectives.append(type(error).__name__)
                continue
            row.append(f"{1e3 * median_seconds(call, arguments.repeat):10.2f}")
            objectives.append(_objective(result))
        print(f"{case:<24} lmm        {'  '.join(row)}  {' '.join(objectives)}")
        previous = lmmfast.set_options(model_cache=0)
        print(f"{case:<24} lmm new    {1e3 * median_seconds(lmm, arguments.repeat):10.2f}")
        lmmfast.set_options(**previous)
        model, other_data = lmmfast.LinearMixedModel(formula, data, reml=reml), data.copy()
        print(f"{case:<24} model.fit  {1e3 * median_seconds(partial(model.fit, other_data), arguments.repeat):10.2f}")
        y = fit.simulate(1, seed=1)[:, 0]
        print(f"{case:<24} refit      {1e3 * median_seconds(partial(fit.refit, y), arguments.repeat):10.2f}")
        began = time.perf_counter()
        fit.bootstrap(200, seed=1)
        print(f"{case:<24} bootstrap  {1e3 * (time.perf_counter() - began) / 200:10.2f}  (ms a replicate)")


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
