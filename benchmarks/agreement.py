"""Print agreement with lme4 and fit times on the reference cases.

Usage: ``.venv/bin/python benchmarks/agreement.py [--repeat 3]``

For each case in tests/reference (and tests/reference/extra): the relative difference of the
objective from lme4's (negative: lmmfast found a lower optimum), the largest relative
difference of a fixed effect, the evaluation counts, and the fit time (median of ``repeat``
fits in this process, numba cache warm) beside lme4's recorded time where it has one.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import lmmfast

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "reference"


def _cases() -> list[dict[str, str]]:
    rows = []
    for folder in (REFERENCE, REFERENCE / "extra"):
        with open(folder / "cases.tsv", newline="") as handle:
            rows.extend(dict(row, folder=str(folder)) for row in csv.DictReader(handle, delimiter="\t"))
    rows.append(
        {
            "id": "sleepstudy_weighted",
            "data": "sleepstudy_weighted.csv",
            "formula": "Reaction ~ Days + (Days | Subject)",
            "criterion": "REML",
            "folder": str(REFERENCE),
        }
    )
    return rows


def _data(case: dict[str, str]) -> pd.DataFrame:
    path = REFERENCE / "extra" / "data" / case["data"]
    return pd.read_csv(path) if path.exists() else lmmfast.datasets.load(case["data"].removesuffix(".csv"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
    lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))  # compile / load cache
    print(
        f"{'case':26s} {'Δobjective (rel)':>17s} {'max rel Δfixef':>15s} {'evals':>6s} {'lme4 evals':>10s} "
        f"{'fit s':>8s} {'lme4 s':>7s}"
    )
    for case in _cases():
        ref = json.loads((Path(case["folder"]) / "fits" / f"{case['id']}.json").read_text())
        data = _data(case)
        weights = "w" if case["id"] == "sleepstudy_weighted" else None
        times, fit = [], None
        for _ in range(args.repeat):
            began = time.perf_counter()
            fit = lmmfast.lmm(case["formula"], data, reml=case["criterion"] == "REML", weights=weights)
            times.append(time.perf_counter() - began)
        assert fit is not None
        estimates = np.atleast_1d(ref["fixef"]["estimate"])
        dfix = float(np.max(np.abs(fit.beta - estimates) / np.maximum(np.abs(estimates), 1e-12)))
        dobj = (fit.objective - ref["objective"]) / abs(ref["objective"])
        lme4_seconds = np.atleast_1d(ref.get("lme4_seconds") or []).tolist()
        lme4_text = f"{statistics.median(lme4_seconds):7.3f}" if lme4_seconds else "      -"
        print(
            f"{case['id']:26s} {dobj:+17.2e} {dfix:15.1e} {fit.n_evals:6d} {ref.get('feval', '-')!s:>10s} "
            f"{statistics.median(times):8.3f} {lme4_text}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
