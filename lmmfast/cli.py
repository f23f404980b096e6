"""The command line: ``lmmfast fit DATA "FORMULA" [--ml] [--weights COL] [--sep SEP]
[--ddf {auto,satterthwaite,none}] [--json]``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lmmfast import datasets
from lmmfast._version import __version__
from lmmfast.api import lmm
from lmmfast.errors import DataError, LmmfastError
from lmmfast.fitted import LmmResult

#: The separators a text file's first lines are searched for when ``--sep`` is not given.
DETECTED_SEPARATORS = ",;\t|"

#: How much of a text file is read to detect its separator.
SNIFF_BYTES = 64 * 1024

#: ``--sep`` accepts these names for characters a shell makes awkward to type.
SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}

DDF_CHOICES = ("auto", "satterthwaite", "none")


def detect_separator(path: Path) -> str:
    """The field separator of a delimited text file: the one of ``DETECTED_SEPARATORS`` that
    splits its first lines into the same number of fields (``,`` when none does).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "data.csv"
    ...     _ = path.write_text("y;x;g\\n1,5;2;a\\n2,5;3;b\\n")
    ...     detect_separator(path)
    ';'
    """
    with path.open(newline="", errors="replace") as handle:
        sample = handle.read(SNIFF_BYTES)
    if len(sample) == SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=DETECTED_SEPARATORS).delimiter
    except csv.Error:
        return ","


def _separator(value: str | None) -> str | None:
    if value is None:
        return None
    separator = SEPARATOR_NAMES.get(value.lower(), value)
    if len(separator) != 1:
        raise DataError(
            f"--sep must be one character (or 'tab', 'comma', 'semicolon', 'pipe', 'space'), got {value!r}."
        )
    return separator


def read_data(source: str, sep: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV, Parquet or Arrow/Feather file, or load a bundled dataset by name.

    A text file's separator is ``sep``, or detected from its first lines (``,``, ``;``,
    tab or ``|``).

    Examples
    --------
    >>> read_data("dyestuff").shape
    (30, 2)
    """
    path = Path(source)
    if not path.exists():
        if source.lower() in datasets.names():
            return datasets.load(source)
        raise DataError(f"{source!r} is neither a file nor a bundled dataset (bundled: {', '.join(datasets.names())}).")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".arrow", ".feather", ".ipc"):
            frame = pd.read_feather(path)
        elif suffix in (".csv", ".txt", ".tsv"):
            frame = pd.read_csv(path, sep=_separator(sep) or detect_separator(path))
        else:
            raise DataError(
                f"Cannot tell the format of {source!r}: use a .csv, .tsv, .parquet, .arrow or .feather file."
            )
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
    fit.add_argument(
        "--sep",
        metavar="SEP",
        help="field separator of a text file (default: detected among , ; tab |); 'tab' for a tab",
    )
    fit.add_argument(
        "--ddf",
        choices=DDF_CHOICES,
        default=None,
        help="denominator df and p-values for the fixed effects: 'satterthwaite' always (also in --json), "
        "'none' never; default 'auto': in the summary when cheap, not in --json",
    )
    fit.add_argument("--json", action="store_true", help="print the fit as one JSON object")
    fit.set_defaults(command_parser=fit)
    return parser


def _stray_arguments_hint(formula: str, extra: Sequence[str]) -> str:
    return (
        f"unrecognized arguments: {' '.join(extra)}\n"
        f"The formula must be one argument: put it in quotes, e.g.\n"
        f'    lmmfast fit DATA "Reaction ~ Days + (Days | Subject)"\n'
        f"(the shell split it at its spaces and passed {formula!r} as the formula; it may also have replaced an "
        "unquoted ~ by your home folder)."
    )


def _coef_table(fit: LmmResult) -> list[dict[str, Any]]:
    table = fit.coef_table
    return [
        {"name": str(name), **{column: float(value) for column, value in row.items()}} for name, row in table.iterrows()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmmfast`` command; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.command_parser.error(_stray_arguments_hint(args.formula, extra))
    try:
        data = read_data(args.data, args.sep)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = lmm(args.formula, data, reml=not args.ml, weights=args.weights)
    except LmmfastError as exc:
        print(f"lmmfast: error: {exc}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"lmmfast: warning: {warning.message}", file=sys.stderr)
    try:
        if args.json:
            payload = fit.to_dict()
            if args.ddf == "satterthwaite":
                payload["coef_table"] = _coef_table(fit)
            print(json.dumps(payload, indent=2))
        else:
            print(fit.summary(ddf=args.ddf or "auto"))
    except LmmfastError as exc:
        print(f"lmmfast: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
