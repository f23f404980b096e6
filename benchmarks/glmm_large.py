"""Time one generalized fit of a large synthetic crossed Bernoulli design, with its peak memory.

Usage: ``.venv/bin/python benchmarks/glmm_large.py [--subjects 5000] [--items 2000]
[--per-subject 200] [--optimizer auto|bobyqa]``. The defaults are the 1M-row design of
docs/performance.md: ``simulate_crossed(5000, 2000, 200, family="binomial", seed=1)`` and
``y ~ cond + freq + (1 + cond | subj) + (1 | item)`` by the Laplace approximation. Prints the
fit's seconds (the data's simulation excluded), the process's peak resident memory, the
optimum, and each stage's optimiser, evaluations and seconds.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import lmmfast

FORMULA = "y ~ cond + freq + (1 + cond | subj) + (1 | item)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--per-subject", type=int, default=200)
    parser.add_argument("--optimizer", default="auto", choices=["auto", "bobyqa"])
    args = parser.parse_args(argv)
    data = lmmfast.datasets.simulate_crossed(args.subjects, args.items, args.per_subject, family="binomial", seed=1)
    began = time.perf_counter()
    fit = lmmfast.glmm(FORMULA, data, control=lmmfast.Control(optimizer=args.optimizer), progress=False)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kilobytes on Linux
    print(f"{len(data)} rows: {seconds:.1f} s, peak RSS {peak:.2f} GiB")
    print(f"-2 log L {fit.objective!r}; theta {fit.theta.round(5).tolist()}; beta {fit.beta.round(5).tolist()}")
    print(f"standard errors {fit.stderr.to_numpy().round(6).tolist()}; Newton gain left {fit.newton_gain}")
    for stage in fit.stages:
        print(f"  {stage.algorithm}: {stage.n_evals} evaluations, {stage.seconds:.1f} s ({stage.return_code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
