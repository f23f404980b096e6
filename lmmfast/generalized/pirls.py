"""Penalised iteratively reweighted least squares: the conditional modes at θ (and β).

For fixed θ the conditional modes ũ minimise the penalised deviance Σ dᵢ(μ) + ‖u‖² over u
(and, in glmer's fast stage ``nAGQ = 0``, over β as well). Each PIRLS iteration is a
weighted linear mixed model on the same sparsity pattern: one pass over the rows forms the
working weights and residuals (:func:`lmmfast.generalized.reweight.reweight`) and the weighted
cross-products (with the row-to-block pattern found once), the factor takes the new values
(:meth:`~lmmfast.factor.RandomEffectsFactor.refill`, symbolic work and layout reused), and
one solve gives the Newton step, halved while it fails to lower the penalised deviance.

Iterations stop when the step is below ``STEP_TOLERANCE``: far tighter than lme4's (a
relative change of 1e-7 in the penalised deviance), because the Laplace deviance is
differentiated numerically for the standard errors, and the log-determinant is not
stationary at the mode. Over (u, β) jointly, which nothing differentiates numerically, a
whole Newton step below ``NEWTON_TOLERANCE`` ends them a step sooner.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numba
import numpy as np

from lmmfast.crossprod import CrossProducts, RowPattern, form_weighted_cross_products
from lmmfast.design.random import RandomTerm
from lmmfast.errors import ModelError
from lmmfast.factor.base import RandomEffectsFactor
from lmmfast.factor.plan import FactorPlan
from lmmfast.factor.scalar_terms import ScalarTermsSolver
from lmmfast.generalized.family import Family
from lmmfast.generalized.response import Response
from lmmfast.generalized.reweight import RowBuffers, add_random_part, loglik_offset, reweight, saturated_terms
from lmmfast.objective import ProfiledObjective, scale_by_lambda, scale_by_lambda_t
from lmmfast.parameters import ThetaLayout

#: PIRLS stops when no element of the step in η or u exceeds this (times max(1, |value|)).
STEP_TOLERANCE = 1e-10
#: ... or, over (u, β) jointly (glmer's ``nAGQ = 0``), after a whole Newton step below this:
#: Newton's steps shrink quadratically near the mode (each about the square of the one
#: before), so the next would be below ``STEP_TOLERANCE`` and taking it only confirms. The
#: Laplace deviance over u alone keeps the confirming step: its standard errors come from
#: differencing it, which amplifies what a step of 1e-8 leaves in the log-determinant.
NEWTON_TOLERANCE = 1e-8
#: At most this many iterations per evaluation ...
MAX_ITERATIONS = 60
#: ... and this many halvings of one step.
MAX_HALVINGS = 30


@dataclass(frozen=True)
class Mode:
    """The conditional modes at one θ and what the deviances need from them.

    Attributes
    ----------
    u : numpy.ndarray
        Spherical conditional modes ũ (engine order).
    beta : numpy.ndarray
        The fixed effects (PIRLS's own where β was free, else the given ones).
    minus_two_loglik : float
        −2 Σ log p(y | μ) at the modes (R's ``aic`` without the parameters).
    deviance : float
        Σ of the deviance residuals at the modes (lme4's ``deviance()``).
    logdet_L : float
        log |L|², L the factor of Λ'Z'WZΛ + I at the modes' working weights.
    iterations : int
    cross_products : CrossProducts
        The weighted cross-products of the last iteration, with X's columns where β was free.
    rx_inverse : numpy.ndarray or None
        (R_X'R_X)⁻¹ of that iteration where β was free: β's covariance for ``nAGQ = 0``.
    """

    u: np.ndarray
    beta: np.ndarray
    minus_two_loglik: float
    deviance: float
    logdet_L: float
    iterations: int
    cross_products: CrossProducts
    rx_inverse: np.ndarray | None = None

    @property
    def penalty(self) -> float:
        """‖ũ‖²."""
        return float(self.u @ self.u)

    @property
    def laplace(self) -> float:
        """The Laplace approximation to −2 log-likelihood (lme4's objective)."""
        return self.minus_two_loglik + self.penalty + self.logdet_L


class Pirls:
    """PIRLS on one model: its rows, terms, family and a factor of its own.

    Parameters
    ----------
    terms : sequence of RandomTerm
        The engine's terms (merged), in the engine's order.
    pattern : RowPattern
        Their rows laid out for the weighted cross-products (its ``shape``: the terms' sizes,
        levels and offsets).
    X : numpy.ndarray
    response : Response
    family : Family
    layout : ThetaLayout
        θ's layout on the engine's terms.
    factor : RandomEffectsFactor
        A factor of the model's pattern made with ``varying_weights``; PIRLS takes a fresh
        copy of it.
    max_threads : int, optional
        Caps the factor's threads.
    """

    def __init__(
        self,
        terms: tuple[RandomTerm, ...],
        pattern: RowPattern,
        X: np.ndarray,
        response: Response,
        family: Family,
        layout: ThetaLayout,
        factor: RandomEffectsFactor,
        max_threads: int | None = None,
    ) -> None:
        self.terms = terms
        self.pattern = pattern
        # C order: every PIRLS iteration reads it row by row (the weighted cross-products)
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.response = response
        self.family = family
        self.layout = layout
        self._factor = factor.fresh(max_threads)
        #: where every term is scalar and the system small, the Newton points in one compiled
        #: call (:mod:`lmmfast.factor.scalar_terms`), the factor left behind
        self._scalar_solver = ScalarTermsSolver.of(pattern.shape, layout)
        #: the (cross-products, θ) the factor has yet to take: the compiled call's last
        #: Newton point, which the factor gets only when it is read (:attr:`factor`)
        self._factor_behind: tuple[CrossProducts, np.ndarray] | None = None
        self.shape = pattern.shape
        self.q = pattern.shape.q
        #: offset + Xβ for the β of the last call (constant while PIRLS runs over u alone)
        self._fixed_part: tuple[np.ndarray, np.ndarray] | None = None
        #: per row, the part of the deviance residual without μ
        self.saturated = saturated_terms(response.y, family)
        #: −2 Σ log p(y | μ) − Σ dᵢ(μ), the same for every μ (:func:`loglik_offset`)
        self.loglik_offset = loglik_offset(response, family, self.saturated)
        self.buffers = RowBuffers.of(len(response.y))
        self._previous_eta = np.empty(len(response.y))
        self._no_columns = np.empty((len(response.y), 0))
        #: the modes of the last evaluation, where the next one starts (None: from u = 0)
        self.last_u: np.ndarray | None = None
        #: the last solve's question and answer, while the buffers and the factor still hold
        #: its state (:meth:`evaluate_rows` forgets it)
        self._last_solve: tuple[bytes, Mode] | None = None

    def fresh(self, max_threads: int | None = None) -> Pirls:
        """The same PIRLS with a factor and buffers of its own (another thread or fit); what
        depends on the rows alone (the saturated deviance terms and the log-likelihood's
        constant, the rows' pattern, X) is shared, never written to."""
        twin = copy.copy(self)
        twin._factor = self._factor.fresh(max_threads)
        twin._factor_behind = None
        twin.buffers = RowBuffers.of(len(self.response.y))
        twin._previous_eta = np.empty(len(self.response.y))
        twin._fixed_part = None
        twin.last_u = None
        twin._last_solve = None
        return twin

    @property
    def factor(self) -> RandomEffectsFactor:
        """The factor at the last Newton point (its weights' cross-products, its θ): what the
        gradients and conditional variances read after :meth:`solve`."""
        if self._factor_behind is not None:
            cross_products, theta = self._factor_behind
            self._factor_behind = None
            self._factor.refill(cross_products)
            self._factor.update(theta)
        return self._factor

    def plan(self) -> FactorPlan:
        """The factor's plan (path, route, threads, memory), which its values do not change:
        read without bringing the factor up to the last Newton point."""
        return self._factor.describe()

    # -- one pass over the rows ---------------------------------------------------------------
    def linear_predictor(self, theta: np.ndarray, u: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """η = offset + Xβ + ZΛu, in the buffers."""
        eta = self.buffers.eta
        if self._fixed_part is None or not np.array_equal(self._fixed_part[0], beta):
            self._fixed_part = (beta.copy(), self.response.offset + (self.X @ beta if len(beta) else 0.0))
        eta[:] = self._fixed_part[1]
        if self.q:
            b = scale_by_lambda(self.layout, self.shape, theta, u)
            add_random_part(self.terms, b, self.shape.column_offsets, eta)
        return eta

    def evaluate_rows(self, eta: np.ndarray) -> tuple[float, float]:
        """Fill the buffers for ``eta``; return (−2 Σ log p, Σ deviance residuals)."""
        self._last_solve = None
        deviance = reweight(eta, self.response, self.family, self.saturated, self.buffers)
        return deviance + self.loglik_offset, deviance

    # -- the iterations -----------------------------------------------------------------------
    def solve(
        self,
        theta: np.ndarray,
        beta: np.ndarray,
        *,
        free_beta: bool,
        u: np.ndarray | None = None,
        eta: np.ndarray | None = None,
    ) -> Mode:
        """The conditional modes at ``theta``: over u with ``beta`` fixed, or over (u, β)
        from ``beta`` where ``free_beta``; from ``u`` (default: the last evaluation's modes).
        ``eta`` gives the first iteration's working weights instead (R's ``mustart``; the
        first step is then taken whole, as lme4 does).

        Asked again what the last call solved (the same θ, and the same β where it is fixed;
        no ``eta``), it returns that call's modes, which the buffers and the factor still hold:
        the optimiser's first evaluation repeats the start's, and the fit's final modes are
        mostly its last evaluation's.

        Raises
        ------
        ModelError
            When the iterations do not converge (separation drives η to infinity, mostly).
        """
        theta = np.asarray(theta, dtype=np.float64)
        question = theta.tobytes() + (b"free" if free_beta else np.asarray(beta, dtype=np.float64).tobytes())
        if eta is None and self._last_solve is not None and self._last_solve[0] == question:
            return self._last_solve[1]
        if u is None:
            u = self.last_u if self.last_u is not None else np.zeros(self.q)
        try:
            mode = self._iterate(theta, np.array(beta, dtype=np.float64), u.copy(), free_beta, eta)
        except PirlsNotConvergedError:
            if not np.any(u):
                raise
            mode = self._iterate(theta, np.array(beta, dtype=np.float64), np.zeros(self.q), free_beta, eta)
        self.last_u = mode.u
        self._last_solve = (question, mode)
        return mode

    def _iterate(
        self, theta: np.ndarray, beta: np.ndarray, u: np.ndarray, free_beta: bool, eta: np.ndarray | None
    ) -> Mode:
        if eta is None:
            aic, deviance = self.evaluate_rows(self.linear_predictor(theta, u, beta))
            penalised = deviance + float(u @ u)
            if not np.isfinite(penalised):  # a start far out (a predicted mode): solve starts again from 0
                raise PirlsNotConvergedError(0)
        else:
            self.buffers.eta[:] = eta
            aic, deviance = self.evaluate_rows(self.buffers.eta)
            penalised = np.inf
        previous_eta = self._previous_eta
        for iteration in range(1, MAX_ITERATIONS + 1):
            cross_products, new_u, new_beta, rx_inverse, logdet = self._newton_point(theta, u, beta, free_beta)
            step_u, step_beta = new_u - u, new_beta - beta
            previous_eta[:] = self.buffers.eta
            fraction = 1.0
            for _ in range(MAX_HALVINGS):
                trial_u, trial_beta = u + fraction * step_u, beta + fraction * step_beta
                trial_aic, trial_deviance = self.evaluate_rows(self.linear_predictor(theta, trial_u, trial_beta))
                trial_penalised = trial_deviance + float(trial_u @ trial_u)
                # the step is measured where it acts, in η and u: β's own steps stay at its
                # rounding (1e-10 of an intercept of 43 next to a predictor near 96) while η
                # has long stopped moving
                eta = self.buffers.eta
                small = _small_change(eta, previous_eta, STEP_TOLERANCE) and _small(
                    fraction * step_u, u, STEP_TOLERANCE
                )
                if trial_penalised <= penalised * (1.0 + 1e-14) + 1e-300 or small:
                    break
                fraction /= 2.0
            else:
                raise PirlsNotConvergedError(iteration)
            if free_beta and fraction == 1.0 and not small:
                small = _small_change(eta, previous_eta, NEWTON_TOLERANCE) and _small(step_u, u, NEWTON_TOLERANCE)
            u, beta, aic, deviance, penalised = trial_u, trial_beta, trial_aic, trial_deviance, trial_penalised
            if small:
                return Mode(u, beta, aic, deviance, logdet, iteration, cross_products, rx_inverse)
        raise PirlsNotConvergedError(MAX_ITERATIONS)

    def _newton_point(
        self, theta: np.ndarray, u: np.ndarray, beta: np.ndarray, free_beta: bool
    ) -> tuple[CrossProducts, np.ndarray, np.ndarray, np.ndarray | None, float]:
        """The penalised weighted least-squares solution at the buffers' working weights:
        the next (u, β) of a full Newton step, with log|L|² at those weights."""
        b = self.buffers
        # the working response less the offset (free β) or less offset and Xβ (fixed β)
        target = b.eta - self.response.offset + b.working_residuals
        if not free_beta and len(beta):
            target = target - self.X @ beta
        X = self.X if free_beta else self._no_columns
        cross_products = form_weighted_cross_products(self.pattern, X, target, b.root_weights)
        self._factor_behind = None
        solver = self._scalar_solver
        if not free_beta:
            if solver is not None:  # the cross-products have no X columns: the solver gives û alone
                new_u, _, logdet, _ = solver.solve(theta, cross_products)
                self._factor_behind = (cross_products, theta.copy())
                return cross_products, new_u, beta, None, logdet
            factor = self._factor
            factor.refill(cross_products)
            factor.update(theta)
            rhs = scale_by_lambda_t(self.layout, cross_products, theta, cross_products.ZtXy[:, -1:])[:, 0]
            return cross_products, factor.solve_Lt(factor.solve_L(rhs)), beta, None, factor.logdet()
        try:
            if solver is not None:
                new_u, new_beta, logdet, covariance = solver.solve(theta, cross_products)
                self._factor_behind = (cross_products, theta.copy())
                return cross_products, new_u, new_beta, covariance, logdet
            self._factor.refill(cross_products)
            solution = ProfiledObjective(cross_products, self.layout, self._factor, reml=False).solve(theta)
        except np.linalg.LinAlgError as error:
            raise ModelError(
                f"The fixed effects cannot be estimated at this θ ({error}); the fixed-effects columns are "
                "(nearly) collinear given the random effects."
            ) from error
        rx_inverse = solution.beta_covariance / solution.sigma**2 if solution.sigma > 0 else None
        return cross_products, solution.u, solution.beta, rx_inverse, solution.logdet_L


class PirlsNotConvergedError(ModelError):
    """PIRLS did not find the conditional modes: the linear predictor diverges (separation)."""

    def __init__(self, iterations: int) -> None:
        super().__init__(
            f"PIRLS did not find the conditional modes ({iterations} iterations); the linear predictor may be "
            "diverging (complete separation: some level or predictor value has only successes or only failures). "
            "Simplify the model, or check the predictors for perfect prediction."
        )


@numba.njit(cache=True, nogil=True)
def _small(step: np.ndarray, value: np.ndarray, tolerance: float) -> bool:
    """Whether no |step| exceeds ``tolerance`` × max(1, |value|)."""
    for i in range(step.shape[0]):  # noqa: SIM110 - a loop numba compiles, with no temporaries
        if not abs(step[i]) <= tolerance * max(1.0, abs(value[i])):
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _small_change(new: np.ndarray, old: np.ndarray, tolerance: float) -> bool:
    """:func:`_small` of the step from ``old`` to ``new``, without forming it."""
    for i in range(new.shape[0]):  # noqa: SIM110 - as in _small
        if not abs(new[i] - old[i]) <= tolerance * max(1.0, abs(old[i])):
            return False
    return True
