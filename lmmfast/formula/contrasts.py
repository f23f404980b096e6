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
from dataclasses import replace

from lmmfast.errors import FormulaError
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
_CODED_NAME = re.compile(r"C\(([A-Za-z_.][A-Za-z0-9_.]*), contr\.[a-z]+\)")
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


def _code(expression: str, codings: Mapping[str, str]) -> str:
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
            if calls == 0 and name in codings and codings[name] != "treatment":
                out.append(f"C({name}, {CODINGS[codings[name]]})")
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


def with_contrasts(model: ModelFormula, codings: Mapping[str, str]) -> ModelFormula:
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
