"""Time lme4 and lmmfast side by side on the same data, in one run.

Usage: ``.venv/bin/python benchmarks/compare_lme4.py [--cases insteval,kb07_m6,...] [--repeat 3]``

Needs R with lme4 (Debian: ``apt-get install r-base-core r-cran-lme4``). Each case is
written to a temporary CSV; R fits it ``repeat`` times in one process (``system.time``, as a
user of a running R session sees it) and lmmfast fits it ``repeat`` times in this process
after one warm-up fit; the medians are compared. Prints fit times, their ratio, evaluation
counts and the difference of the objectives (negative: lmmfast's optimum is lower).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# R runs in the environment it was started with, not with the OpenBLAS spin lmmfast asks for
R_ENVIRONMENT = dict(os.environ)

import lmmfast  # noqa: E402 - after R_ENVIRONMENT: importing lmmfast changes os.environ

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(TRUE)
d <- read.csv(a[1], stringsAsFactors = TRUE)
for (g in strsplit(a[4], ",")[[1]]) if (nchar(g)) d[[g]] <- factor(d[[g]])
f <- as.formula(a[2]); reml <- as.logical(a[3]); n <- as.integer(a[5])
times <- numeric(0)
for (i in seq_len(n)) times <- c(times, system.time(m <- lmer(f, d, REML = reml))[["elapsed"]])
obj <- if (reml) REMLcrit(m) else deviance(m)
cat(sprintf('{"seconds": [%s], "objective": %.10f, "feval": %d}\n',
            paste(times, collapse = ","), obj, m@optinfo$feval))
"""

CASES = {
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True, "Subject"),
    "penicillin": ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", True, "plate,sample"),
    "pastes": ("pastes", "strength ~ 1 + (1 | batch/cask)", True, "batch,cask"),
    "insteval": ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", False, "s,d,dept"),
    "kb07_m6": ("kb07", "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1|subj) + (1+P|item)", False, "subj,item"),
    "kb07_zcp": (
        "kb07",
        "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1+S+P+C+SP+SC+PC+SPC||subj) + (1+S+P+C+SP+SC+PC+SPC||item)",
        False,
        "subj,item",
    ),
    "kb07_slopes20": ("kb07", "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1+S+P+C|subj) + (1+S+P+C|item)", False, "subj,item"),
    # 72 θ; lme4 needs minutes for it, so it runs only when named (--cases kb07_maximal --repeat 1)
    "kb07_maximal": (
        "kb07",
        "RTtrunc ~ 1+S+P+C+SP+SC+PC+SPC + (1+S+P+C+SP+SC+PC+SPC|subj) + (1+S+P+C+SP+SC+PC+SPC|item)",
        False,
        "subj,item",
    ),
    "crossed_100k_intercepts": ("sim:2000,500,50", "y ~ cond + freq + (1 | subj) + (1 | item)", False, "subj,item"),
    "crossed_100k_slopes": (
        "sim:500,2000,200",
        "y ~ cond + freq + (1 + cond | subj) + (1 + cond | item)",
        False,
        "subj,item",
    ),
}


def _data(source: str):
    if source.startswith("sim:"):
        subjects, items, per_subject = (int(v) for v in source[4:].split(","))
        return lmmfast.datasets.simulate_crossed(subjects, items, per_subject, seed=1)
    return lmmfast.datasets.load(source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ",".join(name for name in CASES if name != "kb07_maximal")
    parser.add_argument("--cases", default=default, help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: install R and lme4 (apt-get install r-base-core r-cran-lme4)", file=sys.stderr)
        return 1
    warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
    lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    print(
        f"{'case':26s} {'rows':>8s} {'lme4 s':>8s} {'lmmfast s':>10s} {'ratio':>7s} {'lme4 evals':>10s} "
        f"{'evals':>6s} {'Δobjective':>11s}"
    )
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "fit.R"
        script.write_text(R_SCRIPT)
        for name in args.cases.split(","):
            source, formula, reml, groups = CASES[name]
            data = _data(source)
            path = Path(folder) / f"{name}.csv"
            data.to_csv(path, index=False)
            completed = subprocess.run(
                [rscript, str(script), str(path), formula, "TRUE" if reml else "FALSE", groups, str(args.repeat)],
                capture_output=True,
                text=True,
                check=True,
                env=R_ENVIRONMENT,
            )
            lme4 = json.loads(completed.stdout.strip().splitlines()[-1])
            lmmfast.lmm(formula, data, reml=reml)  # the warm-up fit: kernels this case alone uses load now
            times, fit = [], None
            for _ in range(args.repeat):
                began = time.perf_counter()
                fit = lmmfast.lmm(formula, data, reml=reml)
                times.append(time.perf_counter() - began)
            assert fit is not None
            ours, theirs = statistics.median(times), statistics.median(lme4["seconds"])
            print(
                f"{name:26s} {len(data):8d} {theirs:8.3f} {ours:10.3f} {theirs / ours:6.1f}× {lme4['feval']:10d} "
                f"{fit.n_evals:6d} {fit.objective - lme4['objective']:+11.2e}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
