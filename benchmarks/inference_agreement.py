"""Print agreement with lmerTest (Satterthwaite df, p) and lme4 (profile intervals) and the
parametric bootstrap's speed.

Usage: ``.venv/bin/python benchmarks/inference_agreement.py``
"""

from __future__ import annotations

import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import lmmfast

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "reference"


def _cases() -> list[dict[str, str]]:
    with open(REFERENCE / "cases.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def main() -> int:
    warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
    print(f"{'case':24s} {'max rel Δdf':>11s} {'max |Δp|':>9s} {'max rel Δprofile':>16s} {'profile s':>9s}")
    for row in _cases():
        case = row["id"]
        ref = json.loads((REFERENCE / "fits" / f"{case}.json").read_text())
        data = lmmfast.datasets.load(row["data"].removesuffix(".csv"))
        fit = lmmfast.lmm(row["formula"], data, reml=row["criterion"] == "REML")
        table = fit.coef_table
        df = np.atleast_1d(ref["fixef"]["df_satterthwaite"])
        p = np.atleast_1d(ref["fixef"]["p_satterthwaite"])
        ddf = float(np.max(np.abs(table.df.to_numpy() / df - 1)))
        dp = float(np.max(np.abs(table.p_value.to_numpy() - p)))
        profile_text, seconds = "-", "-"
        if "confint_profile" in ref:
            began = time.perf_counter()
            intervals = fit.confint(method="profile")
            seconds = f"{time.perf_counter() - began:9.1f}"
            theirs = np.concatenate([ref["confint_profile"]["lower"], ref["confint_profile"]["upper"]])
            mine = np.concatenate([intervals.lower.to_numpy(), intervals.upper.to_numpy()])
            scale = np.where(np.abs(theirs) < 1e-2, 1.0, np.abs(theirs))
            profile_text = f"{np.max(np.abs(mine - theirs) / scale):.1e}"
        print(f"{case:24s} {ddf:11.1e} {dp:9.1e} {profile_text:>16s} {seconds:>9s}", flush=True)
    for dataset, formula, reml, count in [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True, 200),
        ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", False, 10),
    ]:
        fit = lmmfast.lmm(formula, lmmfast.datasets.load(dataset), reml=reml)
        for processes in (1, 2):
            began = time.perf_counter()
            fit.bootstrap(count, seed=1, processes=processes)
            rate = count / (time.perf_counter() - began)
            print(f"bootstrap {dataset:10s} processes={processes}: {rate:7.2f} replicates/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
