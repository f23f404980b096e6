"""Shared test helpers: the lme4 reference fits copied into tests/reference/."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

import lmmfast
from lmmfast.fit import assemble
from lmmfast.prepare import prepare

REFERENCE = Path(__file__).parent / "reference"

#: lme4's slopes model of sleepstudy, the tests' everyday example.
SLEEPSTUDY_SLOPES = "Reaction ~ Days + (Days | Subject)"


EXTRA = REFERENCE / "extra"


def reference_cases() -> list[dict[str, str]]:
    """The project's reference cases (``reference/cases.tsv``) and the further published
    analyses in ``reference/extra/cases.tsv``: id, data, formula, criterion."""
    cases = []
    for folder in (REFERENCE, EXTRA):
        with open(folder / "cases.tsv", newline="") as handle:
            cases.extend(dict(row, folder=str(folder)) for row in csv.DictReader(handle, delimiter="\t"))
    return cases


def reference_fit(case: dict[str, str] | str) -> dict:
    """lme4's reference fit for one case (a case row or a case id of the main set)."""
    folder = Path(case["folder"]) if isinstance(case, dict) else REFERENCE
    case_id = case["id"] if isinstance(case, dict) else case
    fit = json.loads((folder / "fits" / f"{case_id}.json").read_text())
    for key in ("names", "estimate", "se"):  # R's JSON writes length-one vectors as scalars
        if not isinstance(fit["fixef"][key], list):
            fit["fixef"][key] = [fit["fixef"][key]]
    return fit


def case_data(case: dict[str, str]) -> pd.DataFrame:
    """The case's data: a file in ``reference/extra/data`` or a bundled dataset."""
    path = EXTRA / "data" / case["data"]
    if path.exists():
        return pd.read_csv(path)
    return lmmfast.datasets.load(case["data"].removesuffix(".csv"))


def r_name(formulaic_name: str) -> str:
    """Spell a formulaic column name as R does: ``recipe[T.B]:temp`` → ``recipeB:temp``."""
    name = "(Intercept)" if formulaic_name == "Intercept" else formulaic_name
    return re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name)


#: R's results of the analysis after a fit (emmeans, lmerTest, pbkrtest, performance).
ANALYSIS = REFERENCE / "analysis"

#: kb07's factors under sum coding, as the analysis references fit them.
KB07_SUM = {"spkr": "sum", "prec": "sum", "load": "sum"}


def reference_data(name: str) -> pd.DataFrame:
    """The analysis references' data: kb07 with its factors, or a bundled dataset (cake's
    temperature as a factor, as the references have it)."""
    if name == "kb07_factors.csv":
        return pd.read_csv(ANALYSIS / name)
    data = lmmfast.datasets.load(name.removesuffix(".csv"))
    return data.assign(temperature=data.temp.astype(str)) if name == "cake.csv" else data


def at_theta(fit: lmmfast.LmmResult, data: pd.DataFrame, theta: list[float], **options) -> lmmfast.LmmResult:
    """The fit's model evaluated at another θ (lme4's), to compare what depends on θ̂ tightly."""
    prepared = prepare(fit.formula, data, **options)
    theta_array = np.asarray(theta)
    record = dataclasses.replace(fit.optsummary, final=theta_array, final_objective=prepared.objective(theta_array))
    return lmmfast.LmmResult.of(assemble(prepared, record))
