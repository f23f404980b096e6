"""Parse lme4's formula language.

The fixed part is left as text for formulaic; each parenthesised ``(expr | group)`` or
``(expr || group)`` term becomes one or more :class:`RandomTermSpec`, with nested grouping
(``a/b``) expanded the way lme4 expands it (``a`` and ``b:a``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmmfast.errors import FormulaError

if TYPE_CHECKING:
    from lmmfast.formula.contrasts import MatrixCoding

_OPEN = "([{"
_CLOSE = ")]}"


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term before it meets the data.

    Attributes
    ----------
    expr : str
        The left-hand side of the bar, e.g. ``"1 + Days"``; formulaic builds its columns.
    factors : tuple of str
        The grouping columns, in the order lme4 names the grouping factor
        (``("b", "a")`` is the factor ``b:a``).
    independent : bool
        True for ``||``: every column becomes a term of its own, uncorrelated with the rest.
    source : str
        The term as written, for messages.
    """

    expr: str
    factors: tuple[str, ...]
    independent: bool
    source: str

    @property
    def group_name(self) -> str:
        """The grouping factor's name as lme4 prints it (``"Machine:Worker"``)."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class ModelFormula:
    """A parsed lme4 formula: response, fixed-effects right-hand side, random terms."""

    text: str
    response: str
    fixed: str
    random: tuple[RandomTermSpec, ...]
    #: The expressions inside ``offset(...)`` terms of the fixed part (R's offsets), in order.
    offsets: tuple[str, ...] = ()
    #: The coding of every categorical predictor, ``(column, coding)`` sorted by column, once
    #: :func:`lmmfast.formula.contrasts.with_contrasts` has applied them (empty before).
    codings: tuple[tuple[str, str | MatrixCoding], ...] = ()

    @property
    def fixed_formula(self) -> str:
        """The fixed part as a complete formula for formulaic."""
        return f"{self.response} ~ {self.fixed}"


def _pointer(text: str, start: int, end: int, message: str) -> FormulaError:
    width = max(1, end - start)
    return FormulaError(f"{message}\n    {text}\n    {' ' * start}{'^' * width}")


def _scan_top_level(text: str, full: str, offset: int, separators: str) -> list[tuple[str, int, int]]:
    """Split ``text`` at top-level characters in ``separators``.

    Returns ``(separator before the piece or "", absolute start, absolute end)`` per piece;
    brackets and quotes are respected, and unbalanced brackets are reported.
    """
    pieces: list[tuple[str, int, int]] = []
    depth = 0
    quote: str | None = None
    start = 0
    before = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "`'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                raise _pointer(full, offset + i, offset + i + 1, "Unbalanced closing bracket in the formula.")
        elif ch in separators and depth == 0:
            pieces.append((before, offset + start, offset + i))
            before = ch
            start = i + 1
    if quote:
        raise _pointer(full, offset, offset + len(text), f"Unclosed quote {quote} in the formula.")
    if depth != 0:
        raise _pointer(full, offset, offset + len(text), "Unbalanced '(' in the formula.")
    pieces.append((before, offset + start, offset + len(text)))
    return pieces


def _closes_at_end(body: str) -> bool:
    """True when the '(' that opens ``body`` is closed by its last character."""
    depth = 0
    for i, ch in enumerate(body):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                return i == len(body) - 1
    return False


def _find_bar(inner: str) -> tuple[int, int] | None:
    """Position and width of the first top-level ``|`` or ``||`` in ``inner``."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == "|" and depth == 0:
            width = 2 if inner[i + 1 : i + 2] == "|" else 1
            return i, width
    return None


def _grouping_factors(group: str, full: str, start: int) -> list[tuple[str, ...]]:
    """Expand ``a``, ``a:b`` and ``a/b`` (lme4: ``a`` + ``b:a``) into factor tuples."""
    stripped = group.strip()
    if stripped.startswith("(") and stripped.endswith(")"):
        stripped = stripped[1:-1].strip()
    if not stripped:
        raise _pointer(full, start, start + max(1, len(group)), "The grouping factor is missing after '|'.")
    nested = [part.strip() for part in stripped.split("/")]
    expanded: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for part in nested:
        pieces = [name.strip() for name in part.split(":")]
        quoted = [len(p) > 1 and p.startswith("`") and p.endswith("`") for p in pieces]
        names = tuple(p[1:-1] if q else p for p, q in zip(pieces, quoted))
        if not part or any(not name for name in names):
            raise _pointer(
                full,
                start,
                start + len(group),
                f"Malformed grouping factor {group.strip()!r}: use a column name, 'a:b' or 'a/b'.",
            )
        for name, was_quoted in zip(names, quoted):
            if not was_quoted and not name.replace("_", "a").replace(".", "a").isalnum():
                raise _pointer(
                    full,
                    start,
                    start + len(group),
                    f"Grouping factor {name!r} is not a column name; grouping factors must be "
                    "plain columns combined with ':' or '/'.",
                )
        prefix = names + prefix
        expanded.append(prefix)
    return expanded


def _parse_random(inner: str, full: str, start: int, source: str) -> list[RandomTermSpec]:
    bar = _find_bar(inner)
    assert bar is not None
    position, width = bar
    expr = inner[:position].strip()
    group = inner[position + width :]
    if not expr:
        raise _pointer(
            full,
            start,
            start + len(source),
            f"Random term {source} has nothing before the bar: write (1 | g) for an intercept.",
        )
    if _find_bar(group) is not None:
        raise _pointer(full, start, start + len(source), f"Random term {source} has more than one bar.")
    return [
        RandomTermSpec(expr=expr, factors=factors, independent=width == 2, source=source)
        for factors in _grouping_factors(group, full, start + 1 + position + width)
    ]


def parse_formula(formula: str) -> ModelFormula:
    """Parse an lme4 model formula.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ModelFormula

    Raises
    ------
    FormulaError
        For malformed syntax (pointing at it) and for formulas without a random term.

    Examples
    --------
    >>> f = parse_formula("y ~ x + (1 | a/b)")
    >>> f.fixed, [t.group_name for t in f.random]
    ('x', ['a', 'b:a'])
    >>> parse_formula("n ~ x + offset(log(t)) + (1 | g)").offsets
    ('log(t)',)
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string such as 'y ~ x + (1 | g)', got {type(formula).__name__}.")
    text = formula.strip()
    tilde_spans = [(start, end) for _, start, end in _scan_top_level(text, text, 0, "~")]
    if len(tilde_spans) != 2:
        raise FormulaError(
            f"The formula {text!r} needs exactly one '~' between the response and the predictors, "
            "e.g. 'y ~ x + (1 | g)'."
        )
    (ls, le), (rs, re_) = tilde_spans
    response = text[ls:le].strip()
    if not response:
        raise _pointer(text, 0, max(1, rs), "The formula has no response on the left of '~'.")
    rhs = text[rs:re_]
    if not rhs.strip():
        raise _pointer(text, rs - 1, rs, "The formula has nothing on the right of '~'.")

    fixed_terms: list[str] = []
    offsets: list[str] = []
    random_terms: list[RandomTermSpec] = []
    for sign, start, end in _scan_top_level(rhs, text, rs, "+-"):
        chunk = text[start:end]
        body = chunk.strip()
        lead = start + len(chunk) - len(chunk.lstrip())
        if not body:
            if sign == "" and start == rs:
                continue  # a leading sign, as in "y ~ -1 + ..."
            raise _pointer(text, max(rs, start - 1), end + 1, "Empty term in the formula (two operators in a row?).")
        if "|" not in body and body.startswith("offset(") and _closes_at_end(body[6:]):
            if sign == "-" or not body[7:-1].strip():
                raise _pointer(text, lead, lead + len(body), "An offset is added as '+ offset(expression)'.")
            offsets.append(body[7:-1].strip())
            continue
        if "|" not in body:
            fixed_terms.append(f"{sign} {body}" if sign == "-" else body)
            continue
        if sign == "-":
            raise _pointer(text, lead, lead + len(body), "A random-effects term cannot be removed with '-'.")
        if not (body.startswith("(") and _closes_at_end(body)):
            raise _pointer(
                text,
                lead,
                lead + len(body),
                "A random-effects term must stand alone in parentheses, as in '+ (1 | g)'.",
            )
        inner = body[1:-1]
        if _find_bar(inner) is None:
            raise _pointer(text, lead, lead + len(body), "A '|' here is nested too deep to be a random-effects term.")
        random_terms.extend(_parse_random(inner, text, lead, body))

    if not random_terms:
        raise FormulaError(
            f"The formula {text!r} has no random-effects term such as (1 | group). "
            "lmmfast fits mixed models; for a model without random effects use ordinary least "
            "squares (e.g. statsmodels.formula.api.ols)."
        )
    fixed = " + ".join(fixed_terms).replace("+ -", "-") if fixed_terms else "1"
    if fixed.startswith("- "):
        fixed = "1 " + fixed
    return ModelFormula(text=text, response=response, fixed=fixed, random=tuple(random_terms), offsets=tuple(offsets))
