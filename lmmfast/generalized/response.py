"""A generalized model's response, prior weights and offset, checked and put in R's form.

Binomial responses come as 0/1 numbers, booleans, a two-level categorical (the second level
in sorted order is the success, as R's factors), a proportion with ``weights=`` the trials,
or ``cbind(successes, failures)``; R's ``glm`` turns all of them into a proportion y with
prior weights (the trials), and so does :func:`binomial_response`. Poisson responses are
counts. Every response that cannot be fitted is a :class:`~lmmfast.errors.DataError` that
says why and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import model_matrix

from lmmfast.errors import DataError, FormulaError
from lmmfast.generalized.family import Family

_CBIND = re.compile(r"^cbind\s*\((.*)\)$", re.DOTALL)

#: Counts and trials may differ from whole numbers by this much (rounding in the data).
INTEGER_TOLERANCE = 1e-7


@dataclass(frozen=True)
class Response:
    """What the likelihood needs per row.

    Attributes
    ----------
    y : numpy.ndarray
        Proportions (binomial) or counts (Poisson).
    weights : numpy.ndarray
        Prior weights (the trials of a proportion; ones where none were given).
    successes, trials, aic_weights : numpy.ndarray
        R's terms of ``family$aic``: round(m y), round(m) and w/m, m the trials (or the
        weights where no row has more than one trial).
    offset : numpy.ndarray
        The offset of every row (0 where there is none).
    success : str or None
        For a categorical binomial response, the level counted as success.
    """

    y: np.ndarray
    weights: np.ndarray
    successes: np.ndarray
    trials: np.ndarray
    aic_weights: np.ndarray
    offset: np.ndarray
    success: str | None = None


def cbind_parts(response: str) -> tuple[str, str] | None:
    """The two expressions of ``cbind(successes, failures)``, or None for another response.

    Examples
    --------
    >>> cbind_parts("cbind(incidence, size - incidence)")
    ('incidence', 'size - incidence')
    >>> cbind_parts("y") is None
    True
    """
    match = _CBIND.match(response.strip())
    if match is None:
        return None
    inner = match.group(1)
    depth, split = 0, -1
    for i, ch in enumerate(inner):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            if split >= 0:
                split = -2
                break
            split = i
    if split < 0 or not inner[:split].strip() or not inner[split + 1 :].strip():
        raise FormulaError(f"{response} must hold two expressions, cbind(successes, failures).")
    return inner[:split].strip(), inner[split + 1 :].strip()


def evaluate(expression: str, frame: pd.DataFrame, where: str) -> np.ndarray:
    """The numeric column ``expression`` makes of ``frame`` (a column or arithmetic on columns),
    every value finite."""
    if expression in frame.columns:
        column = frame[expression]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            raise DataError(f"{where} {expression!r} must be numeric, got {column.dtype}.")
        values = column.to_numpy(dtype=np.float64)
    else:
        try:
            with np.errstate(all="ignore"):
                matrix = model_matrix(f"0 + I({expression})", frame, na_action="raise")
        except Exception as exc:  # formulaic raises many types; the cause is the expression
            raise FormulaError(f"{where} {expression!r} could not be evaluated: {exc}") from exc
        values = np.asarray(matrix, dtype=np.float64)[:, 0]
    if not np.all(np.isfinite(values)):
        raise DataError(
            f"{where} {expression!r} has {int(np.sum(~np.isfinite(values)))} infinite or undefined values "
            "(log of 0?); remove or recode those rows."
        )
    return values


def whole_numbers(values: np.ndarray) -> bool:
    """Whether every value is a whole number (to ``INTEGER_TOLERANCE``)."""
    return bool(np.all(np.abs(values - np.round(values)) <= INTEGER_TOLERANCE * np.maximum(1.0, np.abs(values))))


def _aic_terms(y: np.ndarray, weights: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R's ``binomial()$aic`` per row: m = trials if any row has more than one, else the
    weights; the term is (w/m) log dbinom(round(m y), round(m), μ)."""
    m = trials if np.any(trials > 1) else weights
    aic_weights = np.divide(weights, m, out=np.zeros_like(weights), where=m > 0)
    return np.round(m * y), np.round(m), aic_weights


def binomial_response(
    frame: pd.DataFrame, response: str, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str | None]:
    """(y, prior weights, successes, trials, aic weights, success level) of a binomial
    response; the formula's left-hand side ``response``."""
    parts = cbind_parts(response)
    success = None
    if parts is not None:
        if weights is not None:
            raise DataError(
                "cbind(successes, failures) gives the trials of every row; weights= cannot be added to it. "
                "Give a proportion with weights=trials instead, or drop weights=."
            )
        successes = evaluate(parts[0], frame, "The successes")
        failures = evaluate(parts[1], frame, "The failures")
        for name, values in (("successes", successes), ("failures", failures)):
            if np.any(values < 0) or not whole_numbers(values):
                raise DataError(
                    f"The {name} in {response} must be whole numbers >= 0; some are negative or fractional."
                )
        trials = successes + failures
        if np.any(trials == 0):
            raise DataError(
                f"{int(np.sum(trials == 0))} rows of {response} have no trials (successes + failures = 0); "
                "remove them: they carry no information."
            )
        y, prior = successes / trials, trials
        description = f"{response}"
    else:
        column = frame[response] if response in frame.columns else None
        if column is not None and not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            levels = sorted(pd.unique(column.dropna()), key=str)
            if len(levels) != 2:
                shown = ", ".join(repr(str(level)) for level in levels[:6])
                raise DataError(
                    f"A binomial response must have two outcomes; {response!r} has {len(levels)} levels ({shown}"
                    f"{', ...' if len(levels) > 6 else ''}). Recode it to two levels, or 0/1."
                )
            success = str(levels[1])
            y = (column.astype(str) == success).to_numpy(dtype=np.float64)
        else:
            y = evaluate(response, frame, "The response")
        prior = np.ones(len(y)) if weights is None else weights
        description = response
        if weights is None:
            if np.any((y != 0) & (y != 1)):
                inside = bool(np.all((y >= 0) & (y <= 1)))
                raise DataError(
                    f"The binomial response {description!r} has values other than 0 and 1"
                    + (
                        ": proportions need their number of trials. Pass weights=<trials column>, or write "
                        "the response as cbind(successes, failures)."
                        if inside
                        else " and outside [0, 1]; a binomial response is 0/1, a proportion with weights=trials, "
                        "or cbind(successes, failures). For counts use family='poisson'."
                    )
                )
        else:
            if np.any((y < 0) | (y > 1)):
                raise DataError(
                    f"The binomial response {description!r} is taken as a proportion of weights= trials, but some "
                    "values lie outside [0, 1]."
                )
            if not whole_numbers(y * weights):
                raise DataError(
                    f"The proportions {description!r} times the trials (weights=) are not whole numbers of "
                    "successes; check that weights= holds the number of trials of each row."
                )
    if np.all(y == 1) or np.all(y == 0):
        outcome = "success" if np.all(y == 1) else "failure"
        raise DataError(
            f"Every observation of {description!r} is a {outcome}: there is nothing to model (the fixed effects "
            "would be infinite)."
        )
    if parts is None and weights is None:
        trials_per_row = np.ones(len(y))
    else:
        trials_per_row = prior
    successes_r, trials_r, aic_weights = _aic_terms(y, prior, trials_per_row)
    return y, prior, successes_r, trials_r, aic_weights, success


def poisson_response(frame: pd.DataFrame, response: str) -> np.ndarray:
    """The counts of a Poisson response."""
    if cbind_parts(response) is not None:
        raise DataError("cbind(successes, failures) is a binomial response; use family='binomial'.")
    column = frame[response] if response in frame.columns else None
    if column is not None and pd.api.types.is_bool_dtype(column):
        raise DataError(f"The Poisson response {response!r} is boolean; for a 0/1 outcome use family='binomial'.")
    y = evaluate(response, frame, "The response")
    if np.any(y < 0) or not whole_numbers(y):
        raise DataError(
            f"A Poisson response holds counts (whole numbers >= 0); {response!r} has "
            + ("negative" if np.any(y < 0) else "fractional")
            + " values."
        )
    if np.all(y == 0):
        raise DataError(f"Every count of {response!r} is 0: there is nothing to model.")
    return np.round(y)


def build_response(
    family: Family, frame: pd.DataFrame, response: str, weights: np.ndarray | None, offset: np.ndarray
) -> Response:
    """The :class:`Response` of ``family`` for the formula's left-hand side on the model frame.

    Examples
    --------
    >>> frame = pd.DataFrame({"s": [1.0, 0.0, 2.0], "f": [1.0, 2.0, 0.0]})
    >>> r = build_response(Family("binomial"), frame, "cbind(s, f)", None, np.zeros(3))
    >>> r.y.tolist(), r.weights.tolist()
    ([0.5, 0.0, 1.0], [2.0, 2.0, 2.0])
    """
    if family.name == "binomial":
        y, prior, successes, trials, aic_weights, success = binomial_response(frame, response, weights)
        return Response(y, prior, successes, trials, aic_weights, offset, success)
    y = poisson_response(frame, response)
    prior = np.ones(len(y)) if weights is None else weights
    return Response(y, prior, y.copy(), np.ones(len(y)), prior.copy(), offset)
