"""What to do about each diagnostic of a fit: warn, raise or ignore."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from lmmfast.errors import ArgumentError, LmmfastWarning, error_for

CHECKS = ("convergence", "singular", "rank_deficiency", "binary_response", "separation")
ACTIONS = ("warn", "raise", "ignore")


def resolve_checks(checks: Mapping[str, str] | None) -> dict[str, str]:
    """Every check's action, ``"warn"`` unless ``checks`` says otherwise (validated).

    Examples
    --------
    >>> resolve_checks({"singular": "ignore"})["singular"], resolve_checks(None)["separation"]
    ('ignore', 'warn')
    """
    resolved = dict.fromkeys(CHECKS, "warn")
    if checks is None:
        return resolved
    if not isinstance(checks, Mapping):
        raise ArgumentError(f"checks must be a dict such as {{'singular': 'ignore'}}, got {type(checks).__name__}.")
    for name, action in checks.items():
        if name not in CHECKS:
            raise ArgumentError(f"Unknown check {name!r}; the checks are {', '.join(map(repr, CHECKS))}.")
        if action not in ACTIONS:
            raise ArgumentError(f"Check {name!r} must be 'warn', 'raise' or 'ignore', got {action!r}.")
        resolved[name] = action
    return resolved


def report(action: str, message: str, category: type[LmmfastWarning]) -> None:
    """Warn, raise the error that stands for the warning (:func:`lmmfast.errors.error_for`,
    an :class:`~lmmfast.errors.LmmfastError`), or stay silent, as ``action`` says."""
    if action == "raise":
        raise error_for(category)(message)
    if action == "warn":
        warnings.warn(message, category, stacklevel=_first_caller_outside_lmmfast())


_PACKAGE = str(Path(__file__).resolve().parent)


def _first_caller_outside_lmmfast() -> int:
    """The ``stacklevel`` that attributes a warning from :func:`report` to the first frame
    outside the package (the user's call), however deep the fit path called it."""
    frame: FrameType | None = sys._getframe(2)  # report's caller
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level
