"""Which data columns a model formula uses."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from formulaic.transforms import TRANSFORMS

from lmmfast.errors import DataError, FormulaError
from lmmfast.formula import ModelFormula
from lmmfast.formula.cache import parsed

_IDENTIFIER = re.compile(r"`([^`]+)`|([A-Za-z_.][A-Za-z0-9_.]*)")


def formula_variables(expression: str, where: str, available: set[str]) -> set[str]:
    """Data variables used by a formulaic expression.

    formulaic hides names that are also transforms (a column ``C`` reads as ``C()``), and
    misses the arguments of some stateful transforms; so a name counts when formulaic sees it
    as a value and it is a column or no transform, and any identifier that is a column counts.
    """
    try:
        parsed_expression = parsed(expression)
    except Exception as exc:
        raise FormulaError(f"Could not parse {where} {expression!r}: {exc}") from exc
    parts = [parsed_expression.lhs, parsed_expression.rhs] if hasattr(parsed_expression, "lhs") else [parsed_expression]
    found: set[str] = set()
    for part in parts:
        for term in part:
            for factor in term.factors:
                for variable in factor.required_variables:
                    name, root = str(variable), str(variable.root)
                    if name in available:  # a column with a dot in its name (formulaic's root stops at it)
                        found.add(name)
                        continue
                    if "callable" in {str(role.value) for role in variable.roles}:
                        if root not in TRANSFORMS and root not in available:
                            raise FormulaError(
                                f"Unknown function {root!r} in {where} {expression!r}; use a numpy function "
                                "(np.log(x)), I(...) for arithmetic, or a formulaic transform."
                            )
                        continue
                    if available and root not in available and name != root:
                        raise _unknown_dotted_name(name, root, available)
                    if root in available or root not in TRANSFORMS:
                        found.add(root)
    for quoted, bare in _IDENTIFIER.findall(expression):
        if (quoted or bare) in available:
            found.add(quoted or bare)
    return found


def _unknown_dotted_name(name: str, root: str, available: set[str]) -> DataError:
    """The error for ``a.b`` when neither ``a.b`` nor ``a`` is a column."""
    close = difflib.get_close_matches(name, sorted(available), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return DataError(
        f"Column {name!r} is not in the data, nor is {root!r} (a formula reads {name} as column {root!r} with "
        f"the attribute {name[len(root) + 1 :]!r}).{hint} A column whose name has a dot can be written as it is "
        f"or quoted in backticks (`{name}`); check its spelling."
    )


def required_columns(model: ModelFormula, available: Iterable[str] = ()) -> list[str]:
    """Every data column the model formula uses, in order of first appearance.

    Examples
    --------
    >>> from lmmfast.formula import parse_formula
    >>> required_columns(parse_formula("y ~ x + (1 + z | g/h)"))
    ['y', 'x', 'z', 'g', 'h']
    """
    columns = {str(c) for c in available}
    pieces = [formula_variables(model.fixed_formula, "the fixed part", columns)]
    pieces.extend(formula_variables(f"0 + I({offset})", f"offset({offset})", columns) for offset in model.offsets)
    seen: dict[str, set[str]] = {}  # maximal models repeat one expression on every factor
    for spec in model.random:
        if spec.expr not in seen:
            seen[spec.expr] = formula_variables(spec.expr, f"the random term {spec.source}", columns)
        pieces.append(seen[spec.expr])
        pieces.append(set(spec.factors))
    text = model.text
    found: list[str] = []
    for piece in pieces:
        for name in sorted(piece, key=lambda v: (text.find(v) if v in text else len(text), v)):
            if name not in found:
                found.append(name)
    return found
