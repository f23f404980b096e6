"""The analysis after a fit: the fixed effects' table with Satterthwaite df (kb07's maximal
model, 72 θ; InstEval), Kenward–Roger's table (InstEval, q = 4,114), marginal means."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

import lmmfast

KB07 = Path(__file__).parents[2] / "tests" / "reference" / "analysis" / "kb07_factors.csv"
SUM = {"spkr": "sum", "prec": "sum", "load": "sum"}
MAXIMAL = "RTtrunc ~ spkr * prec * load + (1 + spkr * prec * load | subj) + (1 + spkr * prec * load | item)"
INSTEVAL = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"


def fresh(fit: lmmfast.LmmResult) -> lmmfast.LmmResult:
    """The same fit without its computed tables (a result caches them)."""
    return dataclasses.replace(fit)


class Kb07Maximal:
    timeout = 600
    number = 1
    repeat = 1

    def setup(self) -> None:
        checks = {"singular": "ignore", "convergence": "ignore"}
        self.fit = lmmfast.lmm(MAXIMAL, pd.read_csv(KB07), contrasts=SUM, checks=checks)

    def time_satterthwaite_table(self) -> None:
        fresh(self.fit).coef_table  # noqa: B018


class InstEvalTables:
    timeout = 600
    number = 1
    repeat = 1

    def setup(self) -> None:
        self.fit = lmmfast.lmm(INSTEVAL, lmmfast.datasets.load("insteval"))

    def time_satterthwaite_table(self) -> None:
        fresh(self.fit).coef_table  # noqa: B018

    def time_kenward_roger_table(self) -> None:
        fresh(self.fit).fixef_table("kenward-roger")

    def peakmem_kenward_roger_table(self) -> None:
        fresh(self.fit).fixef_table("kenward-roger")


class Kb07MarginalMeans:
    def setup(self) -> None:
        self.fit = lmmfast.lmm(
            "RTtrunc ~ spkr * prec * load + (1 | subj) + (1 + prec | item)", pd.read_csv(KB07), contrasts=SUM
        )
        self.fit.coef_table  # noqa: B018 - the derivatives, computed once

    def time_emmeans_and_pairwise(self) -> None:
        self.fit.emmeans("prec", by="load").contrasts("pairwise")
