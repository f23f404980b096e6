"""Shared test helpers: the lme4 reference fits copied into tests/reference/."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

REFERENCE = Path(__file__).parent / "reference"


def reference_cases() -> list[dict[str, str]]:
    """Rows of ``reference/cases.tsv``: id, data, formula, criterion, nobs."""
    with open(REFERENCE / "cases.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def reference_fit(case_id: str) -> dict:
    """lme4's reference fit for one case."""
    return json.loads((REFERENCE / "fits" / f"{case_id}.json").read_text())


def r_name(formulaic_name: str) -> str:
    """Spell a formulaic column name as R does: ``recipe[T.B]:temp`` → ``recipeB:temp``."""
    name = "(Intercept)" if formulaic_name == "Intercept" else formulaic_name
    return re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name)

