"""Time lme4 and lmmfast side by side on the same data, in one run.

Usage: ``.venv/bin/python benchmarks/compare_lme4.py [--cases insteval,kb07_m6,...] [--repeat 3]``
(``--cases glmer`` for every generalized case against glmer).

Needs R with lme4 (Debian: ``apt-get install r-base-core r-cran-lme4``). Each case is
written to a temporary CSV; R fits it ``repeat`` times in one process (``system.time``, as a
user of a running R session sees it) and lmmfast fits it ``repeat`` times in this process
after one warm-up fit, preparing the model each time as lme4 does (the store of recently
prepared models, ``set_options(model_cache=...)``, is off); the medians are compared.
Prints fit times, their ratio, evaluation counts and the difference of the objectives
(negative: lmmfast's optimum is lower).
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

GLMER_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(TRUE)
d <- read.csv(a[1], stringsAsFactors = TRUE)
for (g in strsplit(a[4], ",")[[1]]) if (nchar(g)) d[[g]] <- factor(d[[g]])
f <- as.formula(a[2]); family <- get(a[3]); n <- as.integer(a[5]); nagq <- as.integer(a[6])
d$.w <- if (nchar(a[7])) d[[a[7]]] else 1
fit <- function() glmer(f, d, family = family, nAGQ = nagq, weights = .w)
times <- numeric(0)
for (i in seq_len(n)) times <- c(times, system.time(m <- fit())[["elapsed"]])
cat(sprintf('{"seconds": [%s], "objective": %.10f, "feval": %d}\n',
            paste(times, collapse = ","), -2 * as.numeric(logLik(m)), sum(m@optinfo$feval)))
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

#: Generalized cases against glmer: data, formula, family, nAGQ, the weights' column, the
#: grouping columns.
GLMER_CASES = {
    "glmer_cbpp": ("cbpp", "prop ~ period + (1 | herd)", "binomial", 1, "size", "herd"),
    "glmer_verbagg": (
        "verbagg",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "binomial",
        1,
        "",
        "id,item",
    ),
    "glmer_verbagg_fast": (
        "verbagg",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "binomial",
        0,
        "",
        "id,item",
    ),
    "glmer_verbagg_interactions": (
        "verbagg",
        "r2 ~ (Anger + Gender + btype + situ)^2 + (1 | id) + (1 | item)",
        "binomial",
        1,
        "",
        "id,item",
    ),
    "glmer_grouseticks": (
        "grouseticks",
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
        1,
        "",
        "BROOD,INDEX,LOCATION",
    ),
    "glmer_contraception": (
        "contraception",
        "use ~ age + age2 + urban + livch + (1 + urban | district)",
        "binomial",
        1,
        "",
        "district",
    ),
    "glmer_crossed_100k": (
        "simbinomial:500,2000,200",
        "y ~ cond + freq + (1 + cond | subj) + (1 | item)",
        "binomial",
        1,
        "",
        "subj,item",
    ),
}


def _data(source: str):
    if source.startswith("sim"):
        family = "binomial" if source.startswith("simbinomial:") else "gaussian"
        subjects, items, per_subject = (int(v) for v in source.split(":")[1].split(","))
        return lmmfast.datasets.simulate_crossed(subjects, items, per_subject, family=family, seed=1)
    return lmmfast.datasets.load(source)


def _fit(name: str, data):
    if name in GLMER_CASES:
        _, formula, family, nagq, weights, _ = GLMER_CASES[name]
        return lmmfast.glmm(formula, data, family, nagq=nagq, weights=weights or None, progress=False)
    _, formula, reml, _ = CASES[name]
    return lmmfast.lmm(formula, data, reml=reml)


def _r_command(rscript: str, folder: Path, name: str, path: Path, repeat: int) -> list[str]:
    if name in GLMER_CASES:
        _, formula, family, nagq, weights, groups = GLMER_CASES[name]
        script = folder / "glmer.R"
        script.write_text(GLMER_SCRIPT)
        return [rscript, str(script), str(path), formula, family, groups, str(repeat), str(nagq), weights]
    _, formula, reml, groups = CASES[name]
    script = folder / "lmer.R"
    script.write_text(R_SCRIPT)
    return [rscript, str(script), str(path), formula, "TRUE" if reml else "FALSE", groups, str(repeat)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ",".join(name for name in CASES if name != "kb07_maximal")
    parser.add_argument(
        "--cases", default=default, help=f"comma-separated, of: {', '.join([*CASES, *GLMER_CASES])}, or glmer"
    )
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
    names = list(GLMER_CASES) if args.cases == "glmer" else args.cases.split(",")
    lmmfast.set_options(model_cache=0)
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            source = GLMER_CASES[name][0] if name in GLMER_CASES else CASES[name][0]
            data = _data(source)
            path = Path(folder) / f"{name}.csv"
            data.to_csv(path, index=False)
            completed = subprocess.run(
                _r_command(rscript, Path(folder), name, path, args.repeat),
                capture_output=True,
                text=True,
                check=True,
                env=R_ENVIRONMENT,
            )
            lme4 = json.loads(completed.stdout.strip().splitlines()[-1])
            _fit(name, data)  # the warm-up fit: kernels this case alone uses load now
            times, fit = [], None
            for _ in range(args.repeat):
                began = time.perf_counter()
                fit = _fit(name, data)
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
