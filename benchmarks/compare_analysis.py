"""Time the analysis after a fit side by side with lmerTest and pbkrtest: the fixed effects'
table with Satterthwaite df, with Kenward–Roger df, and the type III F tests, each on a fit
made beforehand (fitting is not timed). One run per table on each side.

Usage: ``.venv/bin/python benchmarks/compare_analysis.py [--cases kb07_sum,insteval,kb07_maximal]
[--skip-r] [--r-timeout 900]``. R needs lme4, lmerTest and pbkrtest; pbkrtest builds the n × n
covariance of the data, so its Kenward–Roger on InstEval is not attempted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

import lmmfast

ROOT = Path(__file__).parents[1]
KB07 = ROOT / "tests" / "reference" / "analysis" / "kb07_factors.csv"
SUM = {"spkr": "sum", "prec": "sum", "load": "sum"}

#: name: (data, formula, codings, Kenward–Roger in R too)
CASES = {
    "kb07_sum": ("kb07", "RTtrunc ~ spkr * prec * load + (1 | subj) + (1 + prec | item)", SUM, True),
    "insteval": ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", None, False),
    "kb07_maximal": (
        "kb07",
        "RTtrunc ~ spkr * prec * load + (1 + spkr * prec * load | subj) + (1 + spkr * prec * load | item)",
        SUM,
        True,
    ),
}

R_SCRIPT = r"""
suppressMessages({library(lme4); library(lmerTest); library(pbkrtest)})
args <- commandArgs(TRUE)
data <- if (args[1] == "insteval") lme4::InstEval else read.csv(args[2], stringsAsFactors = TRUE)
if (args[1] != "insteval") for (f in c("spkr", "prec", "load")) contrasts(data[[f]]) <- contr.sum(2)
# lme4's fit; lmerTest's derivatives for Satterthwaite are computed by as_lmerModLmerTest
m <- lme4::lmer(as.formula(args[3]), data, control = lmerControl(calc.derivs = FALSE))
# each table's time printed as soon as it is known, so that a timeout keeps the earlier ones
timed <- function(name, expr) {
  t <- proc.time()[["elapsed"]]; force(expr)
  cat(sprintf('{"%s": %.3f}\n', name, proc.time()[["elapsed"]] - t)); flush(stdout())
}
timed("satterthwaite", {mt <- as_lmerModLmerTest(m); coef(summary(mt))})
timed("anova3", anova(mt, type = 3))
if (args[4] == "TRUE") timed("kenward_roger", coef(summary(mt, ddf = "Kenward-Roger")))
"""


def _data(source: str) -> pd.DataFrame:
    return pd.read_csv(KB07) if source == "kb07" else lmmfast.datasets.load(source)


def _time(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _timings(fit: lmmfast.LmmResult) -> dict[str, float]:
    """lmmfast's time per table, in the order the fit computes them (the Satterthwaite table's
    derivatives are reused by the F tests, as lmerTest reuses its own)."""
    return {
        "satterthwaite": _time(lambda: fit.coef_table),
        "anova3": _time(lambda: fit.anova_terms(type=3)),
        "kenward_roger": _time(lambda: fit.fixef_table("kenward-roger")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="kb07_sum,insteval", help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--skip-r", action="store_true", help="time lmmfast only")
    parser.add_argument("--r-timeout", type=float, default=900.0, help="seconds allowed to each R run")
    args = parser.parse_args(argv)
    script = Path(tempfile.mkdtemp()) / "analysis.R"
    script.write_text(R_SCRIPT)
    print(f"{'case':14} {'table':16} {'lmmfast s':>10} {'R s':>10} {'ratio':>8}")
    for name in args.cases.split(","):
        source, formula, codings, kenward_roger_in_r = CASES[name]
        data = _data(source)
        fit = lmmfast.lmm(formula, data, contrasts=codings, checks={"singular": "ignore", "convergence": "ignore"})
        ours = _timings(fit)
        theirs: dict[str, float] = {}
        if not args.skip_r:
            command = ["Rscript", str(script), source, str(KB07), formula, str(kenward_roger_in_r).upper()]
            try:
                printed = subprocess.run(
                    command, capture_output=True, text=True, timeout=args.r_timeout, check=True
                ).stdout
            except subprocess.TimeoutExpired as error:
                printed = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
                print(f"{name}: R stopped after {args.r_timeout:.0f} s; tables it had not finished are left out")
            except subprocess.SubprocessError as error:
                printed = ""
                print(f"{name}: R failed ({type(error).__name__})")
            for line in printed.splitlines():
                theirs.update(json.loads(line))
        for table, seconds in ours.items():
            r = theirs.get(table)
            ratio = f"{r / seconds:8.1f}" if r is not None and seconds > 0 else f"{'—':>8}"
            r_text = f"{r:10.2f}" if r is not None else f"{'—':>10}"
            print(f"{name:14} {table:16} {seconds:10.2f} {r_text} {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
