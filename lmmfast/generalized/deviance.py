"""The deviances a generalized fit optimises, each one PIRLS away (lme4's ``glmer`` devfuns).

* :meth:`GlmmDeviance.fast` — θ ↦ the Laplace deviance with β found by PIRLS along with the
  modes (glmer's ``nAGQ = 0`` and the first stage of every fit).
* :meth:`GlmmDeviance.laplace` — (θ, β) ↦ −2 log-likelihood by the Laplace approximation,
  ``aic(y, μ̃) + ‖ũ‖² + log|L|²`` at the conditional modes for that β (``nAGQ = 1``).
* :meth:`GlmmDeviance.laplace_and_gradient` — the same with its analytic gradient
  (:mod:`lmmfast.generalized.laplace_gradient`), where :attr:`GlmmDeviance.has_gradient`.
* :meth:`GlmmDeviance.quadrature` — (θ, β) ↦ adaptive Gauss–Hermite quadrature with
  ``nagq`` nodes per level of a single scalar term, centred at the modes and scaled by their
  conditional standard deviations; built, as lme4's, from the deviance residuals (so on
  another scale than the Laplace value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from lmmfast.errors import ModelError
from lmmfast.generalized.laplace_gradient import ModeDerivatives, fast_gradient, laplace_gradient
from lmmfast.generalized.pirls import Mode, Pirls
from lmmfast.generalized.reweight import deviance_residuals, mean_and_derivative

#: Returned where PIRLS cannot find the modes, so that the optimiser steps back (finite:
#: BOBYQA's quadratic models cannot digest infinities).
INFEASIBLE = 1e30


def gauss_hermite(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of Gauss–Hermite quadrature against the standard normal density
    (the weights sum to 1), as lme4's ``GHrule``.

    Examples
    --------
    >>> z, w = gauss_hermite(3)
    >>> z.round(6).tolist(), round(float(w.sum()), 12)
    ([-1.732051, 0.0, 1.732051], 1.0)
    """
    z, w = hermegauss(nodes)
    return z, w / np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Linearisation:
    """The modes at a point of a deviance's parameters and their slopes there
    (:class:`~lmmfast.generalized.laplace_gradient.ModeDerivatives`): where the next
    evaluation's PIRLS starts. Optimisers step short distances from the last point with a
    gradient, so the first-order prediction is close and PIRLS needs an iteration or two
    fewer than from the last modes themselves.

    Examples
    --------
    >>> slopes = ModeDerivatives(np.zeros(1), np.array([[2.0], [0.0]]), np.array([[1.0]]))
    >>> u, beta = Linearisation(np.array([1.0]), np.zeros(2), np.zeros(1), slopes).predict(np.array([1.5]))
    >>> u.tolist(), beta.tolist()
    ([1.0, 0.0], [0.5])
    """

    point: np.ndarray
    u: np.ndarray
    beta: np.ndarray
    derivatives: ModeDerivatives

    def predict(self, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, β) to first order at ``point`` (β as at the linearisation where PIRLS does not
        estimate it)."""
        step = point - self.point
        u = self.u + self.derivatives.mode_slopes @ step
        beta_slopes = self.derivatives.beta_slopes
        return u, self.beta if beta_slopes is None else self.beta + beta_slopes @ step


class GlmmDeviance:
    """The deviance functions of one model, on a PIRLS of their own.

    Parameters
    ----------
    pirls : Pirls
    n_theta : int
        θ's length; (θ, β) parameter vectors hold θ first.
    nagq : int
        Quadrature nodes (1: Laplace).
    """

    def __init__(self, pirls: Pirls, n_theta: int, nagq: int = 1) -> None:
        self.pirls = pirls
        self.n_theta = n_theta
        self.nagq = nagq
        nodes, weights = gauss_hermite(nagq) if nagq > 1 else (np.zeros(1), np.ones(1))
        self.nodes: np.ndarray = nodes
        self.weights: np.ndarray = weights
        #: the β PIRLS estimated at the last :meth:`fast` evaluation, where the next starts
        self.last_beta = np.zeros(pirls.X.shape[1])
        #: the last gradient evaluation's modes and slopes, per deviance (θ for :meth:`fast`,
        #: (θ, β) for the Laplace deviance): where the next evaluation starts
        self._fast_linearisation: Linearisation | None = None
        self._laplace_linearisation: Linearisation | None = None

    def fresh(self, max_threads: int | None = None) -> GlmmDeviance:
        """The same functions on a PIRLS of their own (another fit or thread)."""
        return GlmmDeviance(self.pirls.fresh(max_threads), self.n_theta, self.nagq)

    def fast(self, theta: np.ndarray, eta: np.ndarray | None = None) -> float:
        """θ ↦ the Laplace deviance at the joint modes of (u, β) (glmer's ``nAGQ = 0``)."""
        try:
            mode = self._fast_mode(np.asarray(theta, dtype=np.float64), eta)
        except np.linalg.LinAlgError:
            return INFEASIBLE
        return _finite(mode.laplace)

    def _fast_mode(self, theta: np.ndarray, eta: np.ndarray | None) -> Mode:
        """PIRLS over (u, β) at θ, from the modes predicted there (or the last ones)."""
        u, beta = None, self.last_beta
        if self._fast_linearisation is not None and eta is None:
            u, beta = self._fast_linearisation.predict(theta)
        mode = self.pirls.solve(theta, beta, free_beta=True, u=u, eta=eta)
        self.last_beta = mode.beta
        return mode

    def mode_at(self, parameters: np.ndarray) -> Mode:
        """The conditional modes at (θ, β) = ``parameters``."""
        theta, beta = parameters[: self.n_theta], parameters[self.n_theta :]
        u = None if self._laplace_linearisation is None else self._laplace_linearisation.predict(parameters)[0]
        return self.pirls.solve(theta, beta, free_beta=False, u=u)

    def laplace(self, parameters: np.ndarray) -> float:
        """(θ, β) ↦ the Laplace approximation to −2 log-likelihood."""
        try:
            mode = self.mode_at(np.asarray(parameters, dtype=np.float64))
        except np.linalg.LinAlgError:
            return INFEASIBLE
        return _finite(mode.laplace)

    @property
    def has_fast_gradient(self) -> bool:
        """Whether :meth:`fast` has an analytic gradient: a canonical link on a factor with a
        selected inverse."""
        factor = self.pirls.factor
        return self.pirls.family.canonical and factor.supports_gradient and factor.describe().route != "grouped"

    @property
    def has_gradient(self) -> bool:
        """Whether the second stage's objective has an analytic gradient: the Laplace
        deviance (``nagq`` 1), where :attr:`has_fast_gradient`."""
        return self.nagq == 1 and self.has_fast_gradient

    def fast_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """θ ↦ (:meth:`fast`'s deviance, its gradient); (``INFEASIBLE``, zeros) where PIRLS
        cannot solve or the value is not finite."""
        theta = np.asarray(theta, dtype=np.float64)
        try:
            mode = self._fast_mode(theta, None)
            derivatives = fast_gradient(self.pirls, theta, mode)
        except np.linalg.LinAlgError:
            return INFEASIBLE, np.zeros(len(theta))
        value, gradient, self._fast_linearisation = _checked(theta, mode, derivatives)
        return value, gradient

    def laplace_and_gradient(self, parameters: np.ndarray) -> tuple[float, np.ndarray]:
        """(θ, β) ↦ (the Laplace deviance, its gradient); (``INFEASIBLE``, zeros) where PIRLS
        fails or the value is not finite, so that the optimiser's line search steps back."""
        parameters = np.asarray(parameters, dtype=np.float64)
        m = self.n_theta
        try:
            mode = self.mode_at(parameters)
            derivatives = laplace_gradient(self.pirls, parameters[:m], mode)
        except (np.linalg.LinAlgError, ModelError):
            return INFEASIBLE, np.zeros(len(parameters))
        value, gradient, self._laplace_linearisation = _checked(parameters, mode, derivatives)
        return value, gradient

    def quadrature(self, parameters: np.ndarray) -> float:
        """(θ, β) ↦ the adaptive Gauss–Hermite deviance with :attr:`nagq` nodes."""
        parameters = np.asarray(parameters, dtype=np.float64)
        try:
            mode = self.mode_at(parameters)
        except np.linalg.LinAlgError:
            return INFEASIBLE
        return _finite(self.quadrature_at(parameters[: self.n_theta], mode))

    def quadrature_at(self, theta: np.ndarray, mode: Mode) -> float:
        """The quadrature deviance at ``mode`` (PIRLS's buffers hold its linear predictor)."""
        pirls = self.pirls
        term = pirls.terms[0]
        codes, values = term.codes, term.values[:, 0]
        levels = term.n_levels
        rows = pirls.buffers
        family = pirls.family
        response = pirls.response
        # the conditional SD of each u_j: 1 / L_jj, L = chol(θ² Z'WZ + 1) (diagonal: one scalar term)
        zwz = mode.cross_products.block_values[:levels]
        sd = 1.0 / np.sqrt(theta[0] ** 2 * zwz + 1.0)
        base = np.bincount(codes, weights=rows.deviance_residuals, minlength=levels) + mode.u**2
        eta0 = rows.eta.copy()
        total = np.zeros(levels)
        for z, w in zip(self.nodes, self.weights):
            if z == 0.0:
                total += w
                continue
            step = z * sd
            mu, _ = mean_and_derivative(eta0 + theta[0] * step[codes] * values, family.link)
            residuals = deviance_residuals(response.y, mu, response.weights, pirls.saturated, family.name)
            at_node = np.bincount(codes, weights=residuals, minlength=levels) + (mode.u + step) ** 2
            total += w * np.exp(-0.5 * (at_node - base) + 0.5 * z * z)
        return float(np.sum(base) + mode.logdet_L - 2.0 * np.sum(np.log(total)))

    def __call__(self, parameters: np.ndarray) -> float:
        """The second stage's objective: :meth:`laplace` or :meth:`quadrature` by ``nagq``."""
        return self.quadrature(parameters) if self.nagq > 1 else self.laplace(parameters)


def _checked(
    point: np.ndarray, mode: Mode, derivatives: ModeDerivatives | None
) -> tuple[float, np.ndarray, Linearisation | None]:
    """(deviance, gradient, the linearisation at ``point``), or (``INFEASIBLE``, zeros, None)
    where either is not finite, so that the optimiser's line search steps back."""
    assert derivatives is not None, "asked only where has_gradient or has_fast_gradient holds"
    value, gradient = mode.laplace, derivatives.gradient
    if not (np.isfinite(value) and np.all(np.isfinite(gradient))):
        return INFEASIBLE, np.zeros(len(point)), None
    return value, gradient, Linearisation(point.copy(), mode.u, mode.beta, derivatives)


def _finite(value: float) -> float:
    return value if np.isfinite(value) else INFEASIBLE
