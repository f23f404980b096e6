"""formulaic's parse of an expression, kept for the next model that writes it.

Parsing is a third of the set-up of a small model (about 0.3 ms an expression, and a model
has three to six), and simulation studies and benchmark suites fit the same formula
thousands of times. The cache is one of the two pieces of state lmmfast keeps between calls
(the other, the models of recent calls, is :mod:`lmmfast.recent`): a pure function of the
expression's text, bounded to ``PARSED_EXPRESSIONS`` entries (least recently used out),
holding formulaic's immutable parse — never data. ``parsed.cache_clear()`` empties it.
"""

from __future__ import annotations

from functools import lru_cache

from formulaic import Formula

#: Expressions kept (each a few kilobytes).
PARSED_EXPRESSIONS = 256


@lru_cache(maxsize=PARSED_EXPRESSIONS)
def parsed(expression: str) -> Formula:
    """formulaic's ``Formula(expression)``, parsed once per distinct text.

    Examples
    --------
    >>> parsed("y ~ x") is parsed("y ~ x")
    True
    """
    return Formula(expression)
