"""Contrast codings of categorical predictors, applied to the factor itself.

``contrasts={"spkr": "sum"}`` codes the factor ``spkr`` by sum-to-zero contrasts wherever the
model uses it — in the fixed part and in every random term — as R users get by setting
``contrasts(f) <- contr.sum`` on the factor (what afex does). lme4's own ``contrasts=``
argument changes the fixed part only. The codings are formulaic's, which are R's: ``"sum"`` is
``contr.sum`` (the last level −1), ``"helmert"`` R's unscaled ``contr.helmert``, ``"sdif"``
MASS's ``contr.sdif`` (successive differences, formulaic's ``contr.diff``), ``"poly"``
``contr.poly``, ``"treatment"`` the default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lmmfast.errors import ArgumentError, FormulaError
from lmmfast.formula.parse import ModelFormula

#: lmmfast's names of the codings, and formulaic's transforms for them.
CODINGS = {
    "treatment": "contr.treatment",
    "sum": "contr.sum",
    "helmert": "contr.helmert",
    "sdif": "contr.diff",
    "poly": "contr.poly",
}

_IDENTIFIER = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_CODED_NAME = re.compile(
    r"C\(([A-Za-z_.][A-Za-z0-9_.]*), contr\.(?:[a-z]+|custom\(\[[^()]*?\], names=\[[^()\[\]]*\]\))\)"
)

#: Characters a matrix coding's column names may not hold (they are written into the formula).
_NAME_FORBIDDEN = set("[](),'\"")


@dataclass(frozen=True)
class MatrixCoding:
    """A factor's coding given as a matrix (R's ``contrasts(f) <- M``): one row per level, in
    the factor's order, one column per coded column, named by ``names``.

    Examples
    --------
    >>> MatrixCoding(((1.0, 0.0), (0.0, 1.0), (-1.0, -1.0)), ("ab", "bc")).formula_text()
    "contr.custom([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], names=['ab', 'bc'])"
    """

    rows: tuple[tuple[float, ...], ...]
    names: tuple[str, ...]

    def formula_text(self) -> str:
        """The coding as formulaic reads it inside ``C(f, ...)``."""
        return f"contr.custom({[list(row) for row in self.rows]!r}, names={list(self.names)!r})"

    @classmethod
    def of(cls, name: str, value: object, levels: list[object]) -> MatrixCoding:
        """The coding of factor ``name`` (levels ``levels``) given as a matrix: a DataFrame
        (its index the levels, its columns the names), an array or nested lists (rows in the
        levels' order; columns named 1, 2, ...), or a MatrixCoding.

        Raises
        ------
        ArgumentError
            For a matrix of the wrong shape, with non-finite entries, columns that are not
            contrasts of full rank, or names that cannot be column names.
        """
        k = len(levels)
        names: list[str] | None = None
        if isinstance(value, MatrixCoding):
            matrix, names = np.asarray(value.rows, dtype=np.float64), list(value.names)
        elif isinstance(value, pd.DataFrame):
            if set(map(str, value.index)) != set(map(str, levels)) or len(value.index) != k:
                raise ArgumentError(
                    f"The coding matrix of {name!r} must have one row per level, its index the levels "
                    f"{[str(level) for level in levels]}, got {[str(i) for i in value.index]}."
                )
            order = {str(i): position for position, i in enumerate(value.index)}
            matrix = value.to_numpy(dtype=np.float64)[[order[str(level)] for level in levels]]
            names = [str(c) for c in value.columns]
        else:
            try:
                matrix = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ArgumentError(
                    f"The coding of {name!r} must be one of {', '.join(map(repr, CODINGS))} or a numeric matrix, "
                    f"got {type(value).__name__}."
                ) from None
        if matrix.ndim != 2 or matrix.shape[0] != k or not 1 <= matrix.shape[1] <= k - 1:
            raise ArgumentError(
                f"The coding matrix of {name!r} must have one row per level ({k}) and 1 to {k - 1} columns, "
                f"got shape {matrix.shape}."
            )
        if not np.all(np.isfinite(matrix)):
            raise ArgumentError(f"The coding matrix of {name!r} has missing or infinite entries.")
        if np.linalg.matrix_rank(np.column_stack([np.ones(k), matrix])) != matrix.shape[1] + 1:
            raise ArgumentError(
                f"The coding matrix of {name!r} is not of full rank together with the intercept: its columns "
                "must be linearly independent and not sum to a constant (contrasts, as R requires)."
            )
        names = names or [str(j + 1) for j in range(matrix.shape[1])]
        if len(set(names)) != len(names) or any(not n or _NAME_FORBIDDEN & set(n) for n in names):
            raise ArgumentError(
                f"The coding matrix of {name!r} needs distinct column names without brackets, commas or quotes, "
                f"got {names}."
            )
        return cls(tuple(tuple(float(v) for v in row) for row in matrix), tuple(names))


_STRING_CODING = re.compile(r"\bC\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*,\s*(['\"])([^'\"]*)\2")


def check_string_codings(model: ModelFormula) -> None:
    """A coding written as a string (``C(Machine, 'sum')``, which formulaic cannot read) is
    a :class:`FormulaError` saying how to write it."""
    for text in (model.fixed, *(spec.expr for spec in model.random)):
        match = _STRING_CODING.search(text)
        if match:
            column, coding = match.group(1), match.group(3)
            hint = f"C({column}, {CODINGS[coding]})" if coding in CODINGS else f"C({column}, contr.sum)"
            raise FormulaError(
                f"{match.group(0)}...) gives the coding as a string, which formulaic does not read: write {hint}, "
                f"or leave the formula as it is and pass contrasts={{{column!r}: {coding!r}}}."
            )


def _code(expression: str, codings: Mapping[str, str | MatrixCoding]) -> str:
    """``expression`` with each bare use of a coded column ``f`` (not inside a function
    call, not followed by '(' or an attribute) written ``C(f, contr.<coding>)``."""
    out: list[str] = []
    calls = 0  # depth inside function calls, where the text is left alone
    stack: list[bool] = []
    position = 0
    while position < len(expression):
        ch = expression[position]
        match = _IDENTIFIER.match(expression, position)
        if match and (position == 0 or not (expression[position - 1].isalnum() or expression[position - 1] in "_.")):
            name = match.group(0)
            end = match.end()
            rest = expression[end:].lstrip()
            if rest.startswith("("):  # a function call: its arguments stay as written
                out.append(expression[position:end])
                position = end
                continue
            coding = codings.get(name)
            if calls == 0 and isinstance(coding, MatrixCoding):
                out.append(f"C({name}, {coding.formula_text()})")
            elif calls == 0 and coding is not None and coding != "treatment":
                out.append(f"C({name}, {CODINGS[str(coding)]})")
            else:
                out.append(name)
            position = end
            continue
        if ch == "(":
            before = "".join(out).rstrip()
            is_call = bool(before) and (before[-1].isalnum() or before[-1] in "_.")
            stack.append(is_call)
            calls += is_call
        elif ch == ")" and stack:
            calls -= stack.pop()
        out.append(ch)
        position += 1
    return "".join(out)


def with_contrasts(model: ModelFormula, codings: Mapping[str, str | MatrixCoding]) -> ModelFormula:
    """The model with the coded factors written ``C(f, contr.<coding>)`` in its fixed part
    and random-term expressions (the formula's text, for display, stays the user's), and the
    codings recorded (to prepare the same model again, as a saved fit does).

    Examples
    --------
    >>> from lmmfast.formula import parse_formula
    >>> model = parse_formula("y ~ spkr * prec + (1 + prec | item)")
    >>> coded = with_contrasts(model, {"spkr": "sum", "prec": "helmert"})
    >>> coded.fixed, coded.random[0].expr
    ('C(spkr, contr.sum) * C(prec, contr.helmert)', '1 + C(prec, contr.helmert)')
    """
    recorded = tuple(sorted(codings.items()))
    if not any(coding != "treatment" for coding in codings.values()):
        return replace(model, codings=recorded)
    random = tuple(replace(spec, expr=_code(spec.expr, codings)) for spec in model.random)
    return replace(model, fixed=_code(model.fixed, codings), random=random, codings=recorded)


def plain_name(name: str) -> str:
    """A model-matrix column name with formulaic's coding call shortened to the factor:
    ``C(spkr, contr.sum)[S.new]`` → ``spkr[S.new]`` (R names it ``spkr1``).

    Examples
    --------
    >>> plain_name("C(spkr, contr.sum)[S.new]:C(prec, contr.sum)[S.break]")
    'spkr[S.new]:prec[S.break]'
    """
    return _CODED_NAME.sub(r"\1", name)
