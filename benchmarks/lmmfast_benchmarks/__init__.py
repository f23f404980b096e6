"""asv benchmarks for lmmfast (run with ``asv run --python=same`` from the repository root)."""
