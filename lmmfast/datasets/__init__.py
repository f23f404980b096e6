"""Small datasets bundled with lmmfast, the classics of the lme4 literature.

==================== ====== ===============================================================
name                 rows   source
==================== ====== ===============================================================
sleepstudy           180    lme4 (Belenky et al. 2003): reaction time by days of deprivation
sleepstudy_weighted  180    sleepstudy with a column ``w`` of prior weights
dyestuff, dyestuff2  30     lme4 (Davies 1972): yield by batch
penicillin           144    lme4: crossed plate × sample
pastes               60     lme4: nested cask within batch
insteval             73421  lme4: lecture evaluations, crossed students × lecturers
kb07                 1790   Kronmüller & Barr (2007), via RePsychLing (MIT)
dragons              480    Our Coding Club teaching data (CC BY-SA 4.0)
machines             54     nlme: workers × machines
orthodont            108    nlme: growth curves
exam                 4059   mlmRev: exam scores in schools
hsb82                7185   mlmRev: High School and Beyond
cake                 270    lme4: cake breakage angles
cbpp                 56     lme4: contagious bovine pleuropneumonia, incidence of size per herd
verbagg              7584   lme4: verbal aggression, crossed subjects (id) × items; ``r2`` 0/1
grouseticks          403    lme4: ticks on grouse chicks by brood and location (counts)
contraception        1934   mlmRev: contraceptive use by district (``use`` 0/1)
==================== ====== ===============================================================

:func:`simulate_crossed` makes synthetic subject × item designs of any size.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from lmmfast.datasets.simulate import simulate_crossed
from lmmfast.errors import ArgumentError

__all__ = ["load", "names", "simulate_crossed"]


def names() -> list[str]:
    """Names of the bundled datasets.

    Examples
    --------
    >>> "sleepstudy" in names()
    True
    """
    return sorted(
        entry.name.removesuffix(".csv")
        for entry in resources.files(__package__).iterdir()
        if entry.name.endswith(".csv")
    )


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a new pandas DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`names`, case-insensitive.

    Examples
    --------
    >>> load("sleepstudy").shape
    (180, 3)
    """
    if not isinstance(name, str):
        raise ArgumentError(f"Dataset name must be a string, got {type(name).__name__}.")
    available = names()
    key = name.lower()
    if key not in available:
        raise ArgumentError(f"No bundled dataset {name!r}; available: {', '.join(available)}.")
    with resources.files(__package__).joinpath(f"{key}.csv").open("rb") as handle:
        frame = pd.read_csv(handle)
    frame.attrs["name"] = key
    return frame
