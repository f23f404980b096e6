"""Response distributions and link functions of generalized models, with R's conventions.

A :class:`Family` names a distribution and a link; the arithmetic per row (inverse link,
its derivative, variance, deviance residuals, −2 log-likelihood) lives in numba kernels
(:mod:`lmmfast.generalized.reweight`) selected by the family's and the link's codes. R clamps μ
away from 0 and 1 in the same places (``binomial()$linkinv``, ``poisson()$linkinv``), and
the kernels follow it, so that extreme linear predictors give R's numbers, not infinities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logit, ndtri

from lmmfast.errors import ArgumentError
from lmmfast.validation import check_choice

#: The links each family takes; the first is its canonical (default) link.
LINKS: dict[str, tuple[str, ...]] = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",)}

#: The codes the kernels branch on.
FAMILY_CODES = {"binomial": 0, "poisson": 1}
LINK_CODES = {"logit": 0, "probit": 1, "cloglog": 2, "log": 3}


@dataclass(frozen=True)
class Family:
    """A response distribution and its link, as R's ``binomial(link = "probit")``.

    Parameters
    ----------
    name : {"binomial", "poisson"}
    link : str, optional
        ``"logit"`` (default), ``"probit"`` or ``"cloglog"`` for binomial; ``"log"`` for Poisson.

    Examples
    --------
    >>> Family("binomial", "probit")
    Family(name='binomial', link='probit')
    >>> Family("poisson").link
    'log'
    """

    name: str
    link: str = ""

    def __post_init__(self) -> None:
        check_choice("family", self.name, tuple(LINKS))
        links = LINKS[self.name]
        if self.link == "":
            object.__setattr__(self, "link", links[0])
        if self.link not in links:
            raise ArgumentError(
                f"The {self.name} family takes the link {' or '.join(map(repr, links))}, got {self.link!r}. "
                "Other families and links (negative binomial, Gamma, identity links) are not fitted by lmmfast yet."
            )

    @property
    def canonical(self) -> bool:
        """Whether the link is the family's canonical one (logit, log): there the observed
        and expected information agree, which the Laplace gradient relies on.

        Examples
        --------
        >>> Family("binomial").canonical, Family("binomial", "probit").canonical
        (True, False)
        """
        return self.link == LINKS[self.name][0]

    @property
    def codes(self) -> tuple[int, int]:
        """(family code, link code) for the kernels."""
        return FAMILY_CODES[self.name], LINK_CODES[self.link]

    def link_function(self, mu: np.ndarray) -> np.ndarray:
        """η = g(μ), for the starting values.

        Examples
        --------
        >>> Family("binomial").link_function(np.array([0.5])).tolist()
        [0.0]
        """
        mu = np.asarray(mu, dtype=np.float64)
        if self.link == "logit":
            return logit(mu)
        if self.link == "probit":
            return ndtri(mu)
        if self.link == "cloglog":
            return np.log(-np.log1p(-mu))
        return np.log(mu)

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """The variance function V(μ): μ(1 − μ) for binomial, μ for Poisson.

        Examples
        --------
        >>> Family("binomial").variance(np.array([0.5])).tolist()
        [0.25]
        """
        mu = np.asarray(mu, dtype=np.float64)
        return mu * (1.0 - mu) if self.name == "binomial" else mu

    def starting_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """R's ``mustart``: ``(w y + 0.5) / (w + 1)`` for binomial, ``y + 0.1`` for Poisson.

        Examples
        --------
        >>> Family("binomial").starting_mu(np.array([0.0, 1.0]), np.ones(2)).tolist()
        [0.25, 0.75]
        """
        if self.name == "binomial":
            return (weights * y + 0.5) / (weights + 1.0)
        return y + 0.1


def family_for(family: object, link: str | None = None) -> Family:
    """The :class:`Family` meant by a name (``"binomial"``, ``"poisson"``) or a Family.

    Examples
    --------
    >>> family_for("binomial", link="cloglog")
    Family(name='binomial', link='cloglog')
    """
    if isinstance(family, Family):
        if link is not None and link != family.link:
            raise ArgumentError(f"link={link!r} disagrees with the family's own link {family.link!r}; give one.")
        return family
    if not isinstance(family, str):
        raise ArgumentError(f"family must be 'binomial', 'poisson' or a lmmfast.Family, got {type(family).__name__}.")
    name = family.strip().lower()
    if name in ("gaussian", "normal"):
        raise ArgumentError("For a Gaussian response fit a linear mixed model: lmmfast.lmm(formula, data).")
    return Family(name, link or "")
