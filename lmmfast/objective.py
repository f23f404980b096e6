"""The profiled ML deviance and REML criterion as functions of θ (docs/design.md, "The model and the
profiled criterion").

Each evaluation scales the stored cross-products by Λθ, refactors, and reads the objective
off log-diagonals; its cost depends on the numbers of levels and fixed effects, never on n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import lapack, solve_triangular

from lmmfast.crossprod import CrossProducts
from lmmfast.factor.base import RandomEffectsFactor
from lmmfast.factor.envelope import EnvelopeCriterion
from lmmfast.factor.plan import FactorPlan
from lmmfast.gradient import per_level_products, theta_gradient
from lmmfast.parameters import ThetaLayout

#: Returned for θ where the fixed-effects block is not positive definite, so the optimiser
#: steps back; finite, because BOBYQA's quadratic models cannot digest infinities or NaN.
INFEASIBLE = 1e30


@dataclass(frozen=True)
class Solution:
    """Everything that follows from θ at the optimum.

    Attributes
    ----------
    beta : numpy.ndarray
        Fixed effects.
    u : numpy.ndarray
        Spherical random effects (engine order).
    b : numpy.ndarray
        Random effects Λu (engine order; term after term, level-major).
    sigma : float
        Residual standard deviation.
    beta_covariance : numpy.ndarray
        σ² (R_X'R_X)⁻¹.
    penalised_rss : float
        r², the penalised (weighted) residual sum of squares.
    logdet_L : float
        log |L|².
    logdet_RX : float
        log |R_X|².
    """

    beta: np.ndarray
    u: np.ndarray
    b: np.ndarray
    sigma: float
    beta_covariance: np.ndarray
    penalised_rss: float
    logdet_L: float
    logdet_RX: float


def scale_by_lambda_t(layout: ThetaLayout, cp: CrossProducts, theta: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Λθ' rhs for an array with one row per random effect (engine order)."""
    out = np.empty_like(rhs)
    for term, (k, levels, offset) in enumerate(zip(cp.term_sizes, cp.term_levels, cp.column_offsets)):
        rows = slice(offset, offset + levels * k)
        template = layout.template(theta, term)
        block = rhs[rows].reshape(levels, k, -1)
        out[rows] = np.matmul(template.T, block).reshape(levels * k, -1)
    return out


def scale_by_lambda(layout: ThetaLayout, cp: CrossProducts, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Λθ u for spherical random effects ``u`` (engine order; a vector or one column each)."""
    out = np.empty_like(u)
    for term, (k, levels, offset) in enumerate(zip(cp.term_sizes, cp.term_levels, cp.column_offsets)):
        rows = slice(offset, offset + levels * k)
        template = layout.template(theta, term)
        block = u[rows].reshape(levels, k, -1)
        out[rows] = np.matmul(template, block).reshape(out[rows].shape)
    return out


class ProfiledObjective:
    """θ ↦ ML deviance or REML criterion, profiled over β and σ.

    Parameters
    ----------
    cross_products : CrossProducts
    layout : ThetaLayout
    factor : RandomEffectsFactor
    reml : bool
    envelope : EnvelopeCriterion, optional
        The whole criterion in one compiled call (:mod:`lmmfast.factor.envelope`), for small
        models: evaluations, gradients and the solution use it; the factor serves what
        follows the fit (conditional variances, Satterthwaite's derivatives).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.datasets import load
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", load("dyestuff"))
    >>> round(fit.objective, 4)
    319.6543
    """

    def __init__(
        self,
        cross_products: CrossProducts,
        layout: ThetaLayout,
        factor: RandomEffectsFactor,
        reml: bool,
        envelope: EnvelopeCriterion | None = None,
    ) -> None:
        self.cross_products = cross_products
        self.layout = layout
        self.factor = factor
        self.reml = reml
        self.envelope = envelope
        #: the criterion's degrees of freedom and constant term (:meth:`_value`'s)
        self._dof = float(cross_products.n - cross_products.p if reml else cross_products.n)
        self._offset = -float(cross_products.sum_log_weights)
        #: the gradient's log-determinant sums at the last θ they were formed for: they depend
        #: on θ and Z'Z alone, not on the response, so every copy (:meth:`fresh`: all share
        #: the factor's Z'Z) keeps them, and refits from one θ̂ to many responses (bootstrap
        #: replicates) form them once instead of once each
        self._known_logdet_sums: tuple[np.ndarray, list[np.ndarray]] | None = None

    def describe(self) -> FactorPlan:
        """The factor's plan, with the order of the compiled criterion's matrix where there is one."""
        plan = self.factor.describe()
        return plan if self.envelope is None else replace(plan, envelope_size=self.envelope.size)

    def fresh(
        self,
        max_threads: int | None = None,
        *,
        reml: bool | None = None,
        cross_products: CrossProducts | None = None,
        factored: bool = False,
    ) -> ProfiledObjective:
        """The same criterion on a fresh copy of the factor (its numbers its own, at most
        ``max_threads`` threads; factored where this one's was last, where ``factored``:
        :meth:`lmmfast.factor.RandomEffectsFactor.fresh`), optionally the other criterion or a
        new response's cross-products.

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.prepare import prepare
        >>> objective = prepare("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff")).objective
        >>> ml = objective.fresh(reml=False)
        >>> ml.reml, ml.factor is objective.factor
        (False, False)
        """
        twin = ProfiledObjective(
            self.cross_products if cross_products is None else cross_products,
            self.layout,
            self.factor.fresh(max_threads, factored=factored),
            self.reml if reml is None else reml,
            None if self.envelope is None else self.envelope.fresh(cross_products),
        )
        twin._known_logdet_sums = self._known_logdet_sums
        return twin

    def _schur(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Factor for θ; return (R_ZX | c_u, lower Cholesky of the [X y] Schur complement)."""
        cp = self.cross_products
        try:
            self.factor.update(theta)
        except np.linalg.LinAlgError:
            # Λ'Z'ZΛ + I ≥ I, so only rounding (data of extreme scale) gets here: infeasible
            return None
        rzx = self.factor.solve_L(scale_by_lambda_t(self.layout, cp, theta, cp.ZtXy))
        schur = cp.XytXy - rzx.T @ rzx
        # LAPACK directly: numpy's wrapper costs more than the factorisation of this small block
        lower, info = lapack.dpotrf(schur, lower=1, clean=1)
        if info != 0 or not np.all(np.isfinite(lower)) or lower[-1, -1] <= 0.0:
            return None
        return rzx, lower

    def _criterion(self, lower: np.ndarray) -> tuple[float, float, float, float]:
        p = self.cross_products.p
        logdet_L = self.factor.logdet()
        logdet_RX = 2.0 * float(np.sum(np.log(np.diag(lower)[:p])))
        r2 = float(lower[-1, -1] ** 2)
        return self._value(logdet_L, logdet_RX, r2), logdet_L, logdet_RX, r2

    def _value(self, logdet_L: float, logdet_RX: float, r2: float) -> float:
        """log|L|² + dof (1 + log(2π r²/dof)) − Σ log w [+ log|R_X|² for REML]."""
        if not r2 > 0.0:  # a perfect fit, or r² underflowed
            return math.inf
        dof = self._dof
        value = logdet_L + dof * (1.0 + math.log(2.0 * math.pi * r2 / dof)) + self._offset
        return value + logdet_RX if self.reml else value

    def __call__(self, theta: np.ndarray) -> float:
        theta = np.asarray(theta, dtype=np.float64)
        if self.envelope is not None:
            value = self.envelope.value(theta, self.reml, self._dof, self._offset)
        else:
            schur = self._schur(theta)
            if schur is None:
                return INFEASIBLE
            value = self._criterion(schur[1])[0]
        return value if math.isfinite(value) else INFEASIBLE

    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`value_and_gradient` is available (the compiled criterion and both
        factorisation paths give it)."""
        return self.envelope is not None or self.factor.supports_gradient

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its analytic gradient with respect to θ (:mod:`lmmfast.gradient`);
        costs about two to three evaluations of the criterion alone.

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.api import prepare
        >>> model = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> value, gradient = model.objective.value_and_gradient(np.array([1.0, 0.0, 1.0]))
        >>> gradient.shape
        (3,)
        """
        theta = np.asarray(theta, dtype=np.float64)
        if self.envelope is not None:
            # the value of a call without the gradient, to the last bit
            gradient = np.zeros(self.layout.size)
            value = self.envelope.value_and_gradient(theta, self.reml, self._dof, self._offset, gradient)
            return (value, gradient) if math.isfinite(value) else (INFEASIBLE, np.zeros(self.layout.size))
        parts = self._gradient_parts(theta)
        if parts is None:
            return INFEASIBLE, np.zeros(self.layout.size)
        value, logdet_sums, residual_sums, reml_sums, r2, _ = parts
        return value, theta_gradient(self.layout, logdet_sums, residual_sums, reml_sums, r2, self._dof)

    def gradient_into(self) -> Callable[[np.ndarray, np.ndarray], float] | None:
        """θ, out ↦ the criterion, its gradient written into ``out`` (INFEASIBLE and zeros
        where it cannot be evaluated): the compiled criterion's, for an optimiser that calls
        it from a callback (None without a compiled criterion). Bound to this copy's arrays.

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.api import prepare
        >>> model = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> evaluate, gradient = model.objective.gradient_into(), np.zeros(3)
        >>> value = evaluate(np.array([1.0, 0.0, 1.0]), gradient)
        >>> bool(value == model.objective.value_and_gradient(np.array([1.0, 0.0, 1.0]))[0])
        True
        """
        if self.envelope is None:
            return None
        compiled = self.envelope.gradient_evaluator(self.reml, self._dof, self._offset)

        def evaluate(theta: np.ndarray, out: np.ndarray) -> float:
            value = compiled(theta, out)
            if math.isfinite(value):
                return value
            out[:] = 0.0
            return INFEASIBLE

        return evaluate

    def deviance_derivatives(self, theta: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """For the deviance not profiled over σ (the REML criterion for REML fits), D(θ, σ) =
        log|M| [+ log|R_X|²] + r²(θ)/σ² + dof·log(2πσ²) − Σ log w: its analytic gradient in
        φ = (θ, σ), and β̂'s covariance σ² (R_X'R_X)⁻¹ at θ — what Satterthwaite's df
        differentiate (:mod:`lmmfast.inference.satterthwaite`).

        ∂D/∂θ has the profiled criterion's pieces with 1/σ² in place of dof/r²
        (:func:`lmmfast.gradient.theta_gradient`), and ∂D/∂σ = −2r²/σ³ + 2 dof/σ.

        Examples
        --------
        >>> import lmmfast
        >>> from lmmfast.api import prepare
        >>> model = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> gradient, covariance = model.objective.deviance_derivatives(np.array([1.0, 0.0, 1.0]), 25.0)
        >>> gradient.shape, covariance.shape
        ((4,), (2, 2))
        """
        parts = self._gradient_parts(np.asarray(theta, dtype=np.float64))
        if parts is None:
            raise np.linalg.LinAlgError("the deviance cannot be evaluated at this θ")
        _, logdet_sums, residual_sums, reml_sums, r2, rx_t = parts
        cp = self.cross_products
        dof = cp.n - cp.p if self.reml else cp.n
        gradient = np.empty(self.layout.size + 1)
        gradient[:-1] = theta_gradient(self.layout, logdet_sums, residual_sums, reml_sums, sigma**2, 1.0)
        gradient[-1] = -2.0 * r2 / sigma**3 + 2.0 * dof / sigma
        p = cp.p
        rx_inverse = solve_triangular(rx_t, np.eye(p), lower=True) if p else np.zeros((0, 0))
        return gradient, sigma**2 * (rx_inverse.T @ rx_inverse)

    def _gradient_parts(
        self, theta: np.ndarray
    ) -> tuple[float, list[np.ndarray], list[np.ndarray], list[np.ndarray] | None, float, np.ndarray] | None:
        """The criterion at θ and the per-term sums its gradient is assembled from
        (:mod:`lmmfast.gradient`): G_t, R_t, (REML) Σ KₗHₗ', r², and R_X (lower); None where
        the criterion cannot be evaluated."""
        if not self.has_gradient:
            raise NotImplementedError("the analytic gradient needs the blocked factorisation path")
        cp = self.cross_products
        schur = self._schur(theta)
        if schur is None:
            return None
        rzx, lower = schur
        value, _, _, r2 = self._criterion(lower)
        if not np.isfinite(value):
            return None
        p = cp.p
        rx_t = lower[:p, :p]
        beta = self._beta(lower)
        modes_rhs = (rzx[:, p] - rzx[:, :p] @ beta)[:, None]
        # û and, for REML, C = M⁻¹Λ'Z'X in one solve; then Λ[û C] and A Λ[û C]
        solved = self.factor.solve_Lt(np.hstack([modes_rhs, rzx[:, :p]]) if self.reml else modes_rhs)
        scaled = scale_by_lambda(self.layout, cp, theta, solved)
        products = self.factor.zz_times(scaled)
        u = solved[:, :1]
        z_residual = cp.ZtXy[:, p:] - cp.ZtXy[:, :p] @ beta[:, None] - products[:, :1]
        sizes, levels = cp.term_sizes, cp.term_levels
        reml_sums = None
        if self.reml and p:
            c = solved[:, 1:]
            c_by_rx = solve_triangular(rx_t.T, solve_triangular(rx_t, c.T, lower=True), lower=False).T
            reml_sums = per_level_products(c_by_rx, products[:, 1:] - cp.ZtXy[:, :p], sizes, levels)
        known = self._known_logdet_sums
        if known is not None and np.array_equal(known[0], theta):
            logdet_sums = known[1]
        else:
            try:
                logdet_sums = self.factor.logdet_gradient_sums(theta)
            except np.linalg.LinAlgError:  # potri on a factor that rounding left singular
                return None
            self._known_logdet_sums = (theta.copy(), logdet_sums)
        return float(value), logdet_sums, per_level_products(z_residual, u, sizes, levels), reml_sums, r2, rx_t

    def _beta(self, lower: np.ndarray) -> np.ndarray:
        """β̂ = R_X⁻¹ c_β from the lower Cholesky factor of the [X y] Schur complement."""
        p = self.cross_products.p
        return solve_triangular(lower[:p, :p].T, lower[p, :p], lower=False) if p else np.zeros(0)

    def solve(self, theta: np.ndarray) -> Solution:
        """β, u, b, σ and Var(β) at ``theta`` (called once, after the optimum)."""
        cp = self.cross_products
        theta = np.asarray(theta, dtype=np.float64)
        p = cp.p
        if self.envelope is not None:
            logdet_L, logdet_RX, r2, coefficients, b, rx_t = self.envelope.solution(theta)
            if not r2 > 0.0:
                raise np.linalg.LinAlgError("Ωθ is not numerically positive definite at this θ")
            u, beta = coefficients[: cp.q], coefficients[cp.q :].copy()
        else:
            schur = self._schur(theta)
            if schur is None:
                raise np.linalg.LinAlgError(
                    "Λ'Z'ZΛ + I or the fixed-effects block is not numerically positive definite at this θ"
                )
            rzx, lower = schur
            _, logdet_L, logdet_RX, r2 = self._criterion(lower)
            rx_t = lower[:p, :p]
            beta = self._beta(lower)
            u = self.factor.solve_Lt(rzx[:, p] - rzx[:, :p] @ beta)
            b = scale_by_lambda(self.layout, cp, theta, u)
        sigma = float(np.sqrt(r2 / (cp.n - p if self.reml else cp.n)))
        rx_inv = lapack.dtrtri(rx_t, lower=1)[0] if p else np.zeros((0, 0))
        return Solution(
            beta=beta,
            u=u,
            b=b,
            sigma=sigma,
            beta_covariance=sigma**2 * (rx_inv.T @ rx_inv),
            penalised_rss=r2,
            logdet_L=logdet_L,
            logdet_RX=logdet_RX,
        )
