"""The command line: ``lmmfast fit DATA "FORMULA" [--ml] [--weights COL] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lmmfast import datasets
from lmmfast._version import __version__
from lmmfast.api import lmm
from lmmfast.errors import DataError, LmmfastError


def read_data(source: str) -> pd.DataFrame:
    """Read a CSV, Parquet or Arrow/Feather file, or load a bundled dataset by name.

    Examples
    --------
    >>> read_data("dyestuff").shape
    (30, 2)
    """
    path = Path(source)
    if not path.exists():
        if source.lower() in datasets.names():
            return datasets.load(source)
        raise DataError(
            f"{source!r} is neither a file nor a bundled dataset (bundled: {', '.join(datasets.names())})."
        )
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".arrow", ".feather", ".ipc"):
            frame = pd.read_feather(path)
        elif suffix in (".csv", ".txt", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(f"Cannot tell the format of {source!r}: use a .csv, .tsv, .parquet, .arrow or .feather file.")
    except LmmfastError:
        raise
    except Exception as exc:
        raise DataError(f"Could not read {source!r}: {exc}") from exc
    frame.attrs["name"] = path.name
    return frame


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmmfast", description="Fit linear mixed models with lme4's formulas.")
    parser.add_argument("--version", action="version", version=f"lmmfast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit a model and print its summary (or JSON)")
    fit.add_argument("data", help="a CSV, Parquet or Arrow/Feather file, or a bundled dataset name")
    fit.add_argument("formula", help='an lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--weights", metavar="COL", help="column of prior weights")
    fit.add_argument("--json", action="store_true", help="print the fit as one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmmfast`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        data = read_data(args.data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = lmm(args.formula, data, reml=not args.ml, weights=args.weights)
    except LmmfastError as exc:
        print(f"lmmfast: error: {exc}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"lmmfast: warning: {warning.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(fit.to_dict(), indent=2))
    else:
        print(fit.summary())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
