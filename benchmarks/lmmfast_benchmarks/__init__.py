"""asv benchmarks for lmmfast (run with ``asv run --python=same`` from the repository root)."""

from __future__ import annotations

import os


def only_if_large(large: bool, what: str) -> None:
    """Skip a large design unless ``LMMFAST_BENCH_LARGE=1`` (asv skips a parameter whose
    setup raises ``NotImplementedError``)."""
    if large and os.environ.get("LMMFAST_BENCH_LARGE") != "1":
        raise NotImplementedError(f"set LMMFAST_BENCH_LARGE=1 to run {what}")
