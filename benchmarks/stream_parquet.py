"""Fits of data read from Parquet in chunks, at scale: time, peak memory, agreement.

    python benchmarks/stream_parquet.py write DIR [--subjects 100000 --items 2000 --per-subject 100 --trials 10]
    python benchmarks/stream_parquet.py fit DIR [--client WORKERS]
    python benchmarks/stream_parquet.py compare [--subjects 50000 --items 2000 --per-subject 200]

``write`` simulates the crossed design of :func:`lmmfast.datasets.simulate_crossed` (correlated
slopes on subjects and items) one block of subjects at a time and writes each block as one
Parquet file of DIR, so that no more than a block is ever in memory; the default is the
100M-row design (100,000 subjects × 2,000 items, 100 items per subject, 10 trials each).
``fit`` fits ``y ~ cond + freq + (cond | subj) + (cond | item)`` by ML from DIR and prints
the time of the passes and of the optimisation and the peak resident memory (with
``--client N``, on a local Dask cluster of N worker processes). ``compare`` simulates the
10M-row design of the speed benchmarks, fits it in memory, from Parquet, and from Parquet
read by a local Dask cluster of two workers (each in its own process, so that each peak is
its own; a worker's memory is not counted) and prints the differences of the optima.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import lmmfast

FORMULA = "y ~ cond + freq + (cond | subj) + (cond | item)"

#: Rows per file written (and so at most in memory while writing).
ROWS_PER_FILE = 5_000_000


def _correlated(rng: np.random.Generator, count: int, sd: tuple[float, float], rho: float) -> np.ndarray:
    cov = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    return rng.multivariate_normal(np.zeros(2), cov, size=count)


def write(folder: Path, subjects: int, items: int, per_subject: int, trials: int, seed: int = 1) -> None:
    """The design of ``simulate_crossed`` (same effects and variances), block by block."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    freq = rng.normal(size=items)
    item_effects = _correlated(rng, items, (25.0, 10.0), -0.2)
    block = max(1, ROWS_PER_FILE // (per_subject * trials))
    started = time.perf_counter()
    for part, first in enumerate(range(0, subjects, block)):
        count = min(block, subjects - first)
        seen = np.argpartition(rng.random((count, items)), per_subject - 1, axis=1)[:, :per_subject]
        subj = np.repeat(np.arange(first, first + count), per_subject * trials)
        item = np.repeat(seen.ravel(), trials)
        cond = rng.choice([-0.5, 0.5], size=len(subj))
        effects = _correlated(rng, count, (40.0, 15.0), 0.3)[subj - first]
        y = (
            400.0
            + 30.0 * cond
            - 10.0 * freq[item]
            + effects[:, 0]
            + effects[:, 1] * cond
            + item_effects[item, 0]
            + item_effects[item, 1] * cond
            + rng.normal(scale=60.0, size=len(subj))
        )
        table = pa.table(
            {"subj": subj.astype(np.int32), "item": item.astype(np.int32), "cond": cond, "freq": freq[item], "y": y}
        )
        pq.write_table(table, folder / f"part-{part:05d}.parquet", row_group_size=1_000_000)
        print(f"wrote {first + count:,} subjects ({time.perf_counter() - started:.0f} s)", flush=True)


def _peak_gib() -> float:
    """This process's peak resident memory (Linux's VmHWM, which starts afresh at exec, unlike
    getrusage's maximum, which a child inherits from the process that started it)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def fit(source: object, workers: int = 0, in_memory: bool = False) -> dict[str, float]:
    """Fit FORMULA (ML) to ``source``; the timings, the peak memory and the optimum."""
    client = None
    if workers:
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None))
    started = time.perf_counter()
    baseline = _peak_gib()
    if in_memory:
        source = pd.read_parquet(source)
        baseline = _peak_gib()
    loaded = time.perf_counter()
    result = lmmfast.lmm(FORMULA, source, reml=False, progress=False, client=client)
    done = time.perf_counter()
    return {
        "rows": float(result.nobs),
        "read_seconds": loaded - started,
        "fit_seconds": done - loaded,
        "optimizer_seconds": result.optsummary.seconds,
        "peak_gib": _peak_gib(),
        "peak_after_loading_gib": baseline,
        "objective": result.objective,
        "beta": [float(b) for b in result.beta],
        "theta": [float(t) for t in result.theta],
    }


def compare(subjects: int, items: int, per_subject: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.parquet"
        data = lmmfast.datasets.simulate_crossed(subjects, items, per_subject, seed=1)
        pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path, row_group_size=1_000_000)
        del data
        results = {}
        for mode in ("memory", "parquet", "dask"):
            command = [sys.executable, __file__, "_one", str(path), mode]
            results[mode] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    memory = results["memory"]
    for mode, result in results.items():
        print(
            f"{mode:8s} {result['rows']:,.0f} rows: fit {result['fit_seconds']:.1f} s "
            f"(optimiser {result['optimizer_seconds']:.1f} s), peak {result['peak_gib']:.2f} GiB "
            f"({result['peak_after_loading_gib']:.2f} GiB once loaded)"
        )
    for mode in ("parquet", "dask"):
        other = results[mode]
        relative = abs(other["objective"] - memory["objective"]) / abs(memory["objective"])
        beta = np.max(np.abs(np.subtract(other["beta"], memory["beta"])) / np.abs(memory["beta"]))
        theta = np.max(np.abs(np.subtract(other["theta"], memory["theta"])))
        print(f"{mode} against memory: objective {relative:.1e} relative; β {beta:.1e} relative; θ {theta:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["write", "fit", "compare", "_one"])
    parser.add_argument("path", nargs="?")
    parser.add_argument("mode", nargs="?", default="parquet")
    parser.add_argument("--subjects", type=int)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--per-subject", type=int)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--client", type=int, default=0, help="fit on a local Dask cluster of this many workers")
    args = parser.parse_args()
    if args.command == "write":
        write(Path(args.path), args.subjects or 100_000, args.items, args.per_subject or 100, args.trials)
    elif args.command == "fit":
        result = fit(args.path, args.client)
        print(
            f"{result['rows']:,.0f} rows from {args.path}: fit {result['fit_seconds']:.1f} s "
            f"(optimiser {result['optimizer_seconds']:.1f} s), peak memory {result['peak_gib']:.2f} GiB; "
            f"objective {result['objective']:.10g}"
        )
    elif args.command == "compare":
        compare(args.subjects or 50_000, args.items, args.per_subject or 200)
    else:
        print(json.dumps(fit(args.path, workers=2 if args.mode == "dask" else 0, in_memory=args.mode == "memory")))


if __name__ == "__main__":
    main()
