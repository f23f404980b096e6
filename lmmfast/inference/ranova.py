"""Likelihood-ratio tests of the random-effects terms (lmerTest's ``ranova``).

Each random term is reduced as lmerTest reduces it: a term with slopes loses one of its
variables at a time (``(Days | Subject)`` → ``(1 | Subject)``), a term with the intercept only is
removed. Every reduced model is fitted to the fit's own rows by the fit's criterion (REML or
ML; the fixed effects are the same, so REML likelihoods compare) and tested against the full
model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmmfast.distributions import chi2_sf
from lmmfast.errors import ModelError
from lmmfast.fit import fit_prepared
from lmmfast.formula.contrasts import plain_name
from lmmfast.formula.parse import ModelFormula, RandomTermSpec
from lmmfast.prepare import prepare

#: A reduced model's own diagnostics are not the question ranova answers.
REDUCED_CHECKS = {"singular": "ignore", "convergence": "ignore", "rank_deficiency": "ignore"}

if TYPE_CHECKING:
    from lmmfast.result import LmmFit


def _pieces(expr: str) -> list[str]:
    """The '+'-separated pieces of a random term's expression (no nested '+' expected inside
    calls; ``C(x, contr.sum)`` holds none)."""
    depth, start, out = 0, 0, []
    for i, ch in enumerate(expr):
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "+" and depth == 0:
            out.append(expr[start:i].strip())
            start = i + 1
    out.append(expr[start:].strip())
    return [piece for piece in out if piece]


def _written(spec: RandomTermSpec, expr: str) -> str:
    return f"({expr} {'||' if spec.independent else '|'} {spec.group_name})"


def reductions(model: ModelFormula, groups: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, reduced formula) per reduction, the terms in the order of their grouping
    factors in ``groups`` (lme4's: decreasing numbers of levels), else as written.

    Examples
    --------
    >>> from lmmfast.formula import parse_formula
    >>> [label for label, _ in reductions(parse_formula("y ~ x + (1 | s) + (1 + x | i)"))]
    ['(1 | s)', 'x in (1 + x | i)']
    """
    out = []
    rank = {group: position for position, group in reversed(list(enumerate(groups)))}
    order = sorted(range(len(model.random)), key=lambda i: rank.get(model.random[i].group_name, len(rank)))
    for index in order:
        spec = model.random[index]
        others = [_written(other, other.expr) for j, other in enumerate(model.random) if j != index]
        pieces = _pieces(spec.expr)
        slopes = [piece for piece in pieces if piece not in ("1", "0", "-1")]
        shown = plain_name(_written(spec, spec.expr))
        if not slopes:
            reduced = others
            label = shown
            out.append((label, f"{model.response} ~ {model.fixed}" + "".join(f" + {t}" for t in reduced)))
            continue
        for slope in slopes:
            kept = [piece for piece in pieces if piece != slope]
            if not any(piece not in ("0", "-1") for piece in kept):
                kept = ["1"]
            reduced = [*others, _written(spec, " + ".join(kept))]
            label = f"{plain_name(slope)} in {shown}"
            out.append((label, f"{model.response} ~ {model.fixed}" + "".join(f" + {t}" for t in reduced)))
    return out


def ranova(fit: LmmFit) -> pd.DataFrame:
    """lmerTest's ``ranova``: one row for the model (``<none>``) and one per reduction of a
    random term, with ``npar, loglik, aic, lrt, df, p_value`` (the test columns compare the
    reduced model with the full one).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> table = ranova(fit)
    >>> list(table.index), round(float(table.lrt.iloc[1]), 3)
    (['<none>', 'Days in (Days | Subject)'], 42.837)
    """
    model = fit.model
    model.require_rows("ranova (which refits each reduced model)")
    frame = model.model_frame.frame
    rows = [("<none>", fit.npar, fit.loglik, fit.aic, np.nan, np.nan, np.nan)]
    for label, formula in reductions(model.formula, [term.group for term in model.terms]):
        if "|" not in formula.split("~", 1)[1]:
            raise ModelError(
                f"ranova cannot remove {label}, the model's only random-effects term: the reduced model would "
                "have no random effects, which lmmfast does not fit. Compare with an ordinary linear model instead."
            )
        prepared = prepare(formula, frame, reml=fit.reml, weights=model.weights, control=model.control)
        reduced = fit_prepared(prepared, checks=REDUCED_CHECKS, progress=False)
        lrt = max(2.0 * (fit.loglik - reduced.loglik), 0.0)
        df = fit.npar - reduced.npar
        rows.append((label, reduced.npar, reduced.loglik, reduced.aic, lrt, df, float(chi2_sf(lrt, df))))
    table = pd.DataFrame(rows, columns=["term", "npar", "loglik", "aic", "lrt", "df", "p_value"]).set_index("term")
    return table
