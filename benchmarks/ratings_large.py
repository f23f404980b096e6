"""Fit a ratings-shaped crossed design (MovieLens-like): users × items, power-law numbers of
ratings per user and per item, crossed intercepts, ML.

Usage: ``.venv/bin/python benchmarks/ratings_large.py [--users 100000] [--items 10000]
[--ratings 10000000]``. Users' numbers of ratings follow a Pareto law (shape 1.5, at least
20 before scaling to the total, at most 3,000), items are drawn with weight (j + 1)⁻¹
(Zipf's law: a few films take most ratings), and ``y = 3.5 + user + item + ε`` with
standard deviations 0.5, 0.5 and 0.9. Prints the rows, the fit's seconds, the peak resident
memory above the data's, the engine's estimate of it, the plan, and the optimum.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np
import pandas as pd

import lmmfast

FORMULA = "y ~ 1 + (1 | user) + (1 | item)"


def ratings(users: int, items: int, total: int, seed: int = 1) -> pd.DataFrame:
    """The design: one row per rating, columns ``user``, ``item`` (integer codes) and ``y``."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(np.floor(20 * (1 + rng.pareto(1.5, users))), 3000)
    counts = np.maximum(1, (counts * (total / counts.sum())).astype(np.int64))
    popularity = 1.0 / np.arange(1, items + 1)
    user = np.repeat(np.arange(users), counts)
    item = rng.choice(items, size=len(user), p=popularity / popularity.sum())
    y = 3.5 + rng.normal(0, 0.5, users)[user] + rng.normal(0, 0.5, items)[item] + rng.normal(0, 0.9, len(user))
    return pd.DataFrame({"user": user, "item": item, "y": y})


def _resident() -> tuple[float, float]:
    """This process's resident memory now and at its peak since the last reset, in MiB (Linux)."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--ratings", type=int, default=10_000_000)
    args = parser.parse_args(argv)
    # a small fit first: loading the compiled kernels is no part of the large fit's time or memory
    small = ratings(200, 50, 4000, seed=2)
    lmmfast.lmm(FORMULA, small, reml=False)
    data = ratings(args.users, args.items, args.ratings)
    gc.collect()
    before, _ = _resident()
    with open("/proc/self/clear_refs", "w") as peak:  # resets the peak (VmHWM) to the present
        peak.write("5")
    began = time.perf_counter()
    fit = lmmfast.lmm(FORMULA, data, reml=False, progress=False)
    seconds = time.perf_counter() - began
    _, peak_mib = _resident()
    print(f"{len(data)} ratings, {data.user.nunique()} users, {data.item.nunique()} items: {seconds:.1f} s")
    print(
        f"peak RSS above the data's {peak_mib - before:.0f} MiB; estimated {fit.engine.estimated_bytes / 2**20:.0f} MiB"
    )
    print(f"plan: {fit.engine}; {fit.optsummary.algorithm}, {fit.optsummary.n_evals} evaluations")
    print(f"deviance {fit.objective!r}; theta {fit.theta.round(5).tolist()}; sigma {fit.sigma:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
