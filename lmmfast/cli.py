"""The command line: ``lmmfast fit DATA "FORMULA" [--family binomial|poisson] [--save FILE]``,
``lmmfast anova DATA "FORMULA" "FORMULA" ...`` and ``lmmfast predict MODEL_FILE DATA``,
printing lme4's layout, JSON (versioned schemas in ``lmmfast/schemas/``), CSV or markdown."""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmfast import datasets
from lmmfast._version import __version__
from lmmfast.api import glmm, lmm
from lmmfast.errors import ArgumentError, DataError, LmmfastError
from lmmfast.fitted import LmmResult
from lmmfast.generalized.result import GlmmResult
from lmmfast.inference.anova import anova
from lmmfast.saved import load

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


OUTPUTS = ("text", "json", "csv", "markdown")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmmfast", description="Fit linear mixed models with lme4's formulas.")
    parser.add_argument("--version", action="version", version=f"lmmfast {__version__}")
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("data", help="a CSV, Parquet or Arrow/Feather file, or a bundled dataset name")
    shared.add_argument(
        "--sep",
        metavar="SEP",
        help="field separator of a text file (default: detected among , ; tab |); 'tab' for a tab",
    )
    shared.add_argument("--weights", metavar="COL", help="column of prior weights")
    shared.add_argument(
        "--chunks",
        action="store_true",
        help="read DATA (a Parquet file or a directory of them) in chunks, holding only their cross-products "
        "(linear models; for data larger than memory)",
    )
    shared.add_argument(
        "--output",
        choices=OUTPUTS,
        default="text",
        help="text (lme4's layout), json (one object, schema in lmmfast/schemas/), csv or markdown (the tables)",
    )
    shared.add_argument("--json", action="store_true", help="the same as --output json")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", parents=[shared], help="fit a model and print its summary (or its tables)")
    fit.add_argument("formula", help='an lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument(
        "--ddf",
        choices=DDF_CHOICES,
        default=None,
        help="denominator df and p-values for the fixed effects: 'satterthwaite' always (also in json, csv and "
        "markdown), 'none' never; default 'auto': in the text summary when cheap",
    )
    fit.add_argument(
        "--family",
        choices=("gaussian", "binomial", "poisson"),
        default="gaussian",
        help="the response's distribution: gaussian (a linear mixed model, the default), or a generalized "
        "model as glmer: binomial (0/1, two levels, cbind(s, f), or a proportion with --weights trials) or poisson",
    )
    fit.add_argument("--link", metavar="LINK", help="binomial: logit (default), probit or cloglog; poisson: log")
    fit.add_argument(
        "--nagq",
        type=int,
        default=1,
        metavar="N",
        help="generalized models: 1 Laplace (default), 0 fast, >1 quadrature",
    )
    fit.add_argument("--offset", metavar="COL", help="generalized models: column of offsets (link scale)")
    fit.add_argument("--save", metavar="FILE", help="save the fit to FILE (for lmmfast predict, or lmmfast.load)")
    fit.add_argument("--include-data", action="store_true", help="with --save: keep the data's rows in the file")
    fit.set_defaults(command_parser=fit)
    anova = commands.add_parser(
        "anova", parents=[shared], help="compare models by likelihood-ratio tests (REML fits refitted by ML)"
    )
    anova.add_argument("formulas", nargs="+", metavar="FORMULA", help="two or more lme4 formulas, each quoted")
    anova.add_argument("--names", metavar="A,B,...", help="labels of the models, comma-separated, in order")
    anova.add_argument("--ml", action="store_true", help="fit by maximum likelihood (the tests use ML either way)")
    anova.set_defaults(command_parser=anova)
    predict = commands.add_parser("predict", help="predictions of a saved fit (lmmfast fit --save) for new data")
    predict.add_argument("model", metavar="MODEL_FILE", help="a fit saved by lmmfast fit --save or fit.save()")
    predict.add_argument("data", help="a CSV, Parquet or Arrow/Feather file, or a bundled dataset name")
    predict.add_argument("--sep", metavar="SEP", help="field separator of a text file (default: detected)")
    predict.add_argument(
        "--re", choices=("all", "none"), default="all", help="with the random effects (default) or without"
    )
    predict.add_argument(
        "--type",
        choices=("response", "link"),
        default="response",
        help="generalized models: probabilities or rates (default), or the linear predictor",
    )
    predict.add_argument(
        "--new-levels",
        choices=("population", "error"),
        default="population",
        help="levels the fit has not seen: predicted without random effects (default), or an error",
    )
    predict.add_argument(
        "--output",
        choices=("csv", "json", "text", "markdown"),
        default="csv",
        help="csv (default: one column, 'prediction'), json (schema in lmmfast/schemas/), text or markdown",
    )
    predict.add_argument("--json", action="store_true", help="the same as --output json")
    predict.set_defaults(command_parser=predict)
    return parser


def _stray_arguments_hint(formula: str, extra: Sequence[str]) -> str:
    return (
        f"unrecognized arguments: {' '.join(extra)}\n"
        f"The formula must be one argument: put it in quotes, e.g.\n"
        f'    lmmfast fit DATA "Reaction ~ Days + (Days | Subject)"\n'
        f"(the shell split it at its spaces and passed {formula!r} as the formula; it may also have replaced an "
        "unquoted ~ by your home folder)."
    )


def _number(value: object) -> float | int | None:
    """A JSON number, or None for a missing or non-finite one."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    if not np.isfinite(number):
        return None
    return int(number) if isinstance(value, (int, np.integer)) else number


def _fixed_effects(fit: LmmResult, ddf: str | None) -> pd.DataFrame:
    """The fixed effects' table: with Satterthwaite df and p-values when ``ddf`` asks for them."""
    if ddf == "satterthwaite":
        table = fit.coef_table
    else:
        table = pd.DataFrame({"estimate": fit.fixef, "std_error": fit.stderr})
        table["t_value"] = table.estimate / table.std_error
    return table.rename_axis("term")


def _markdown(table: pd.DataFrame) -> str:
    """A pipe table, numbers to 6 significant digits."""
    frame = table.reset_index()
    header = [str(c) for c in frame.columns]

    def cell(value: object) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if not np.isfinite(value) else f"{value:.6g}"
        return "" if value is None else str(value)

    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _print_glmm(fit: GlmmResult, output: str) -> None:
    if output == "json":
        print(json.dumps(fit.to_dict(), indent=2))
    elif output == "csv":
        print(fit.coef_table.rename_axis("term").to_csv(), end="")
    elif output == "markdown":
        print(
            f"**{fit.formula}** — {fit.family.name} ({fit.link}), −2 logLik {fit.objective:.3f}, "
            f"{fit.nobs} observations\n"
        )
        print(_markdown(fit.coef_table.rename_axis("term")) + "\n")
        print(_markdown(fit.varcorr.set_index("grp")))
    else:
        print(fit.summary())


def _fit(args: argparse.Namespace, data: object) -> LmmResult | GlmmResult:
    """The model the ``fit`` command's options ask for."""
    if args.family == "gaussian":
        for option, given in (("--link", args.link is not None), ("--nagq", args.nagq != 1), ("--offset", args.offset)):
            if given:
                raise ArgumentError(f"{option} is for generalized models: add --family binomial or --family poisson.")
        return lmm(args.formula, data, reml=not args.ml, weights=args.weights)
    if args.ddf not in (None, "auto"):
        raise ArgumentError("--ddf is for linear mixed models; a generalized model's summary has Wald z tests.")
    return glmm(
        args.formula, data, args.family, link=args.link, weights=args.weights, offset=args.offset, nagq=args.nagq
    )


def _print_fit(fit: LmmResult | GlmmResult, output: str, ddf: str | None) -> None:
    if isinstance(fit, GlmmResult):
        _print_glmm(fit, output)
        return
    if output == "json":
        payload = fit.to_dict()
        if ddf == "satterthwaite":
            payload["coef_table"] = [
                {"name": str(name), **{column: _number(value) for column, value in row.items()}}
                for name, row in fit.coef_table.iterrows()
            ]
        print(json.dumps(payload, indent=2))
    elif output == "csv":
        print(_fixed_effects(fit, ddf).to_csv(), end="")
    elif output == "markdown":
        print(f"**{fit.formula}** — {fit.criterion} {fit.objective:.3f}, {fit.nobs} observations\n")
        print(_markdown(_fixed_effects(fit, ddf)) + "\n")
        print(_markdown(fit.varcorr.set_index("grp")))
    else:
        print(fit.summary(ddf=ddf or "auto"))


def _print_anova(table: pd.DataFrame, output: str) -> None:
    if output == "json":
        rows: list[dict[str, Any]] = []
        for label, row in table.iterrows():
            entry: dict[str, Any] = {"model": str(label)}
            entry.update({column: _number(value) for column, value in row.items()})
            entry["npar"] = int(row["npar"])
            entry["df"] = int(row["df"]) if np.isfinite(row["df"]) else None
            rows.append(entry)
        print(json.dumps({"schema": ANOVA_SCHEMA, "models": rows}, indent=2))
    elif output == "csv":
        print(table.to_csv(), end="")
    elif output == "markdown":
        print(_markdown(table))
    else:
        print(table.to_string())


#: The version of ``lmmfast anova --output json``'s layout (``lmmfast/schemas/anova.schema.json``).
ANOVA_SCHEMA = "lmmfast-anova/1"

#: The version of ``lmmfast predict --output json``'s layout (``lmmfast/schemas/predictions.schema.json``).
PREDICTIONS_SCHEMA = "lmmfast-predictions/1"


def _predictions(args: argparse.Namespace) -> tuple[LmmResult | GlmmResult, np.ndarray]:
    """The saved fit and its predictions for the rows of the data, as ``predict`` asks."""
    fit = load(args.model)
    data = read_data(args.data, args.sep)
    if isinstance(fit, GlmmResult):
        return fit, fit.predict(data, type=args.type, re=args.re, new_levels=args.new_levels)
    if args.type != "response":
        raise ArgumentError("--type link is for generalized models; a linear model's predictions are its means.")
    return fit, fit.predict(data, re=args.re, new_levels=args.new_levels)


def _print_predictions(fit: LmmResult | GlmmResult, values: np.ndarray, args: argparse.Namespace, output: str) -> None:
    table = pd.DataFrame({"prediction": values})
    if output == "json":
        payload = {
            "schema": PREDICTIONS_SCHEMA,
            "formula": fit.formula,
            "kind": "glmm" if isinstance(fit, GlmmResult) else "lmm",
            "re": args.re,
            "scale": args.type,
            "nrows": len(values),
            "predictions": [float(v) for v in values],
        }
        print(json.dumps(payload, indent=2))
    elif output == "csv":
        print(table.to_csv(index=False, float_format="%.17g"), end="")
    elif output == "markdown":
        print(_markdown(table.rename_axis("row")))
    else:
        print(table.to_string())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmmfast`` command; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "fit" and extra:
        args.command_parser.error(_stray_arguments_hint(args.formula, extra))
    if extra:
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "anova" and any("~" not in formula for formula in args.formulas):
        args.command_parser.error(
            "every formula must be one argument with a '~': put each in quotes, e.g.\n"
            '    lmmfast anova DATA "Reaction ~ Days + (1 | Subject)" "Reaction ~ Days + (Days | Subject)"'
        )
    output = "json" if args.json else args.output
    if args.command == "predict":
        try:
            fit, values = _predictions(args)
        except LmmfastError as exc:
            print(f"lmmfast: error: {exc}", file=sys.stderr)
            return 2
        _print_predictions(fit, values, args, output)
        return 0
    if args.command == "fit" and args.include_data and not args.save:
        args.command_parser.error("--include-data goes with --save FILE.")
    try:
        data: object = args.data if args.chunks else read_data(args.data, args.sep)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.command == "fit":
                fits: list[LmmResult | GlmmResult] = [_fit(args, data)]
            else:
                compared = [lmm(f, data, reml=not args.ml, weights=args.weights) for f in args.formulas]
                names = None if args.names is None else [n.strip() for n in args.names.split(",")]
                table = anova(*compared, names=names)
    except LmmfastError as exc:
        print(f"lmmfast: error: {exc}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"lmmfast: warning: {warning.message}", file=sys.stderr)
    try:
        if args.command == "fit":
            if args.save:
                fits[0].save(args.save, include_data=args.include_data)
            _print_fit(fits[0], output, args.ddf)
        else:
            _print_anova(table, output)
    except LmmfastError as exc:
        print(f"lmmfast: error: {exc}", file=sys.stderr)
        return 2
    return 0


#: The exit status when the reader closes the output pipe early: 128 + SIGPIPE, what a shell
#: reports for a command that SIGPIPE stopped.
BROKEN_PIPE_STATUS = 141

#: The exit status after Ctrl-C: 128 + SIGINT, as a shell reports it.
INTERRUPTED_STATUS = 130


def command() -> None:
    """The installed ``lmmfast`` command: :func:`main`, then the process's exit.

    The objects left at exit (about half a million, most of them the imported libraries') are
    moved out of the collector's reach first: Python's final collection would otherwise scan
    them all, a sizeable part of a short command's run (docs/performance.md). The output is
    flushed before, and nothing of lmmfast's needs collecting at exit. Output cut short by its
    reader (a closed pipe) ends the command quietly with ``BROKEN_PIPE_STATUS``, as a
    command stopped by SIGPIPE would; Ctrl-C with a one-line message and
    ``INTERRUPTED_STATUS``, not a traceback from wherever the fit was.
    """
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader stopped reading (``lmmfast fit ... | head``): the rest of the output has
        # nowhere to go, and Python's own flush at exit would fail on it again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = BROKEN_PIPE_STATUS
    except KeyboardInterrupt:
        print("lmmfast: interrupted", file=sys.stderr)
        status = INTERRUPTED_STATUS
    sys.stderr.flush()
    gc.freeze()
    raise SystemExit(status)


if __name__ == "__main__":  # pragma: no cover
    command()
