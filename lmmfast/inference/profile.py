"""Profile-likelihood intervals (lme4's ``profile`` and ``confint(method = "profile")``).

Each parameter — the standard deviations and correlations of the random effects, σ, and the
fixed effects — is held at a value v while the ML deviance is minimised over all the others;
ζ(v) = sign(v − v̂)·√(D(v) − D̂) and the interval is where |ζ| reaches the normal quantile.
As lme4 does, REML fits are profiled on the ML deviance (after an ML refit).

Variance parameters are profiled on lme4's σ-scale: per term, Σ = σ²ΛΛ' with
Λ = diag(sd/σ)·chol(R) for the correlation matrix R, so sds and correlations are coordinates.
Fixed effects are profiled by moving x_j·v into an offset, which only changes the stored
cross-products — no pass over the data.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import nlopt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lmmfast.distributions import normal_quantile
from lmmfast.fit import refit_ml
from lmmfast.inference.bootstrap import bootstrap, check_client, run_replicates
from lmmfast.inference.satterthwaite import deviance_at
from lmmfast.objective import INFEASIBLE, ProfiledObjective
from lmmfast.validation import check_choice, check_count, check_level

if TYPE_CHECKING:
    from lmmfast.result import LmmFit


class _SigmaScale:
    """The map between θ (with σ) and lme4's σ-scale parameters (sds, correlations, σ)."""

    def __init__(self, fit: LmmFit) -> None:
        self.sizes = [len(t.columns) for t in fit.terms]
        self.names: list[str] = []
        self.kinds: list[str] = []
        for term in fit.terms:
            k = len(term.columns)
            for j in range(k):
                for i in range(j, k):
                    if i == j:
                        self.names.append(f"sd_{term.columns[i]}|{term.group}")
                        self.kinds.append("sd")
                    else:
                        self.names.append(f"cor_{term.columns[i]}.{term.columns[j]}|{term.group}")
                        self.kinds.append("cor")
        self.names.append("sigma")
        self.kinds.append("sigma")

    def from_theta(self, theta: np.ndarray, sigma: float, layout) -> np.ndarray:
        out = []
        for t, k in enumerate(self.sizes):
            lam = layout.template(theta, t)
            cov = sigma**2 * lam @ lam.T
            sd = np.sqrt(np.diag(cov))
            for j in range(k):
                for i in range(j, k):
                    if i == j:
                        out.append(sd[i])
                    else:
                        denominator = sd[i] * sd[j]
                        out.append(cov[i, j] / denominator if denominator > 0 else 0.0)
        out.append(sigma)
        return np.asarray(out)

    def to_theta(self, phi: np.ndarray) -> np.ndarray | None:
        """θ for σ-scale parameters, or None where the correlations are not a valid matrix."""
        sigma = phi[-1]
        if not sigma > 0:
            return None
        theta: list[float] = []
        position = 0
        for k in self.sizes:
            R = np.eye(k)
            sd = np.empty(k)
            for j in range(k):
                for i in range(j, k):
                    if i == j:
                        sd[i] = phi[position]
                    else:
                        R[i, j] = R[j, i] = phi[position]
                    position += 1
            try:
                chol = np.linalg.cholesky(R) if k > 1 else np.ones((1, 1))
            except np.linalg.LinAlgError:
                return None
            lam = (sd / sigma)[:, None] * chol
            theta.extend(lam[i, j] for j in range(k) for i in range(j, k))
        return np.asarray(theta)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lower = np.array([0.0 if kind != "cor" else -1.0 for kind in self.kinds])
        upper = np.array([np.inf if kind != "cor" else 1.0 for kind in self.kinds])
        lower[-1] = 1e-12
        return lower, upper


def _minimise(func, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    if len(x0) == 0:
        return func(x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
    opt.set_min_objective(lambda x, grad: func(x))
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(upper)
    opt.set_ftol_abs(1e-10)
    opt.set_xtol_abs(1e-9)
    opt.set_maxeval(20_000)
    start = np.clip(x0, lower, upper)
    step = np.where(
        np.isfinite(upper - lower), np.minimum(0.1, (upper - lower) / 4), 0.1 * np.maximum(np.abs(start), 0.1)
    )
    opt.set_initial_step(np.maximum(step, 1e-6))
    try:
        opt.optimize(start)
        return float(opt.last_optimum_value())
    except nlopt.RoundoffLimited:
        return float(opt.last_optimum_value())


class _Profiler:
    def __init__(self, fit: LmmFit) -> None:
        self.ml = refit_ml(fit)
        self.objective = self.ml.model.objective
        self.layout = self.ml.model.layout
        self.scale = _SigmaScale(self.ml)
        self.phi_hat = self.scale.from_theta(self.ml.theta, self.ml.sigma, self.layout)
        self.deviance_hat = deviance_at(self.objective, self.ml.theta, self.ml.sigma)
        self.lower, self.upper = self.scale.bounds()

    def _deviance_phi(self, phi: np.ndarray) -> float:
        theta = self.scale.to_theta(phi)
        if theta is None:
            return INFEASIBLE
        value = deviance_at(self.objective, theta, phi[-1])
        return value if np.isfinite(value) else INFEASIBLE

    def variance_deviance(self, index: int, value: float) -> float:
        free = np.arange(len(self.phi_hat)) != index

        def func(x: np.ndarray) -> float:
            phi = self.phi_hat.copy()
            phi[free] = x
            phi[index] = value
            return self._deviance_phi(phi)

        return _minimise(func, self.phi_hat[free], self.lower[free], self.upper[free])

    def fixed_deviance(self, index: int, value: float) -> float:
        cp = self.objective.cross_products
        p = cp.p
        keep = [j for j in range(p) if j != index]
        transform = np.zeros((p + 1, p))  # [X' y'] = [X y] T
        transform[keep, np.arange(p - 1)] = 1.0
        transform[p, p - 1] = 1.0
        transform[index, p - 1] = -value
        reduced = replace(cp, ZtXy=cp.ZtXy @ transform, XytXy=transform.T @ cp.XytXy @ transform)
        objective = ProfiledObjective(reduced, self.objective.layout, self.objective.factor, reml=False)
        lower = self.layout.lower_bounds
        return _minimise(objective, self.ml.theta.copy(), lower, np.full_like(lower, np.inf))

    def zeta(self, kind: str, index: int, value: float, estimate: float) -> float:
        deviance = self.variance_deviance(index, value) if kind == "var" else self.fixed_deviance(index, value)
        difference = max(deviance - self.deviance_hat, 0.0)
        return float(np.sign(value - estimate) * np.sqrt(difference))


def _bound(zeta, estimate: float, target: float, direction: int, scale: float, hard: float) -> float:
    """Where ζ = target on one side of the estimate, within the hard limit ``hard``."""
    from scipy.optimize import brentq  # here: scipy.optimize costs a new process 0.1 s to import

    step = scale
    inner = estimate
    for _ in range(60):
        outer = estimate + direction * step
        if (direction > 0 and outer >= hard) or (direction < 0 and outer <= hard):
            outer = hard
            if abs(zeta(outer)) < abs(target):
                return hard
        if abs(zeta(outer)) >= abs(target):
            return float(
                brentq(lambda v: zeta(v) - target, min(inner, outer), max(inner, outer), xtol=1e-10, rtol=1e-9)
            )
        inner = outer
        step *= 1.6
    return float(outer)


def _interval(payload: tuple[_Profiler, float], task: tuple[str, int, str]) -> tuple[np.ndarray, bool]:
    """One parameter's interval: ``task`` is (``"var"`` or ``"fixed"``, its index, its kind)."""
    profiler, z = payload
    which, index, kind = task
    if which == "var":
        estimate = float(profiler.phi_hat[index])

        def zeta(v: float) -> float:
            return profiler.zeta("var", index, v, estimate)

        if kind == "cor":
            bounds = (_bound(zeta, estimate, -z, -1, 0.1, -1.0), _bound(zeta, estimate, z, 1, 0.1, 1.0))
        else:
            scale = max(0.1 * estimate, 1e-3 * profiler.ml.sigma)
            bounds = (_bound(zeta, estimate, -z, -1, scale, 0.0), _bound(zeta, estimate, z, 1, scale, np.inf))
    else:
        estimate = float(profiler.ml.beta[index])
        stderr = float(np.sqrt(profiler.ml.beta_covariance[index, index]))

        def zeta_fixed(v: float) -> float:
            return profiler.zeta("fixed", index, v, estimate)

        bounds = (
            _bound(zeta_fixed, estimate, -z, -1, stderr, -np.inf),
            _bound(zeta_fixed, estimate, z, 1, stderr, np.inf),
        )
    return np.array(bounds), True


def profile_intervals(
    fit: LmmFit, level: float = 0.95, *, progress: bool = False, processes: int = 1, client: Any = None
) -> pd.DataFrame:
    """Profile-likelihood confidence intervals, rows named as lme4 names them; ``progress``
    shows a bar over the parameters. With ``processes`` > 1 or a Dask ``client`` the
    parameters are profiled in parallel (one BLAS thread each); the intervals are the same
    to the last bits of rounding.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> profile_intervals(fit).round(2).loc["sigma"].tolist()
    [38.23, 67.66]
    """
    level = check_level(level)
    processes = check_count("processes", processes)
    check_client(client, processes)
    profiler = _Profiler(fit)
    z = float(normal_quantile(0.5 + level / 2))
    tasks = [("var", index, kind) for index, kind in enumerate(profiler.scale.kinds)]
    tasks += [("fixed", index, "fixed") for index in range(len(fit.fixef_names))]
    names = [*profiler.scale.names, *fit.fixef_names]
    if processes == 1 and client is None:  # here, with BLAS's own threads
        bar = tqdm(tasks, desc="profile", disable=not progress)
        results = [_interval((profiler, z), task) for task in bar]
    else:
        results = run_replicates(
            (profiler, z), _interval, tasks, processes=processes, progress=progress, desc="profile", client=client
        )
    return pd.DataFrame([bounds for bounds, _ in results], index=names, columns=["lower", "upper"])


def profile_traces(fit: LmmFit, level: float = 0.99, points: int = 9, *, progress: bool = False) -> pd.DataFrame:
    """ζ along each parameter, on ``points`` values spanning its ``level`` interval — for
    plotting a profile (lme4's ``profile(m)``). Columns ``parameter, value, zeta``.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> trace = profile_traces(fit, points=5)
    >>> trace[trace.parameter == "sigma"].zeta.round(2).tolist()
    [-2.58, -0.59, 0.78, 1.79, 2.58]
    """
    points = check_count("points", points, minimum=3)
    intervals = profile_intervals(fit, level, progress=progress)
    profiler = _Profiler(fit)
    frames = []
    variance_count = len(profiler.scale.names)
    for position, (name, (lower, upper)) in enumerate(intervals.iterrows()):
        if not (np.isfinite(lower) and np.isfinite(upper)):
            continue
        values = np.linspace(lower, upper, int(points))
        if position < variance_count:
            estimate = float(profiler.phi_hat[position])
            zetas = [profiler.zeta("var", position, v, estimate) for v in values]
        else:
            index = position - variance_count
            estimate = float(profiler.ml.beta[index])
            zetas = [profiler.zeta("fixed", index, v, estimate) for v in values]
        frames.append(pd.DataFrame({"parameter": name, "value": values, "zeta": zetas}))
    return pd.concat(frames, ignore_index=True)


def bootstrap_intervals(
    fit: LmmFit,
    n: int = 1000,
    level: float = 0.95,
    *,
    seed: int | None = None,
    kind: str = "percentile",
    processes: int = 1,
    progress: bool = False,
    client: Any = None,
) -> pd.DataFrame:
    """Parametric-bootstrap intervals, percentile or shortest-coverage, for the same rows as
    :func:`profile_intervals` (the fit's own criterion, REML or ML, is used for the replicates).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> list(bootstrap_intervals(fit, 20, seed=1).index)
    ['sd_(Intercept)|Batch', 'sigma', 'Intercept']
    """
    kind = check_choice("kind", kind, ("percentile", "shortest"))
    level = check_level(level)
    replicates = bootstrap(fit, n, seed=seed, processes=processes, progress=progress, client=client)
    scale = _SigmaScale(fit)
    theta = replicates[list(fit.theta_names)].to_numpy()
    sigma = replicates["sigma"].to_numpy()
    sigma_scale = np.vstack([scale.from_theta(t, s, fit.model.layout) for t, s in zip(theta, sigma)])
    table = pd.DataFrame(sigma_scale, columns=scale.names)
    for name in fit.fixef_names:
        table[name] = replicates[name].to_numpy()
    rows = {}
    for name in table.columns:
        values = np.sort(table[name].to_numpy())
        if kind == "percentile":
            rows[name] = tuple(np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))
        else:
            width = max(1, int(np.ceil(level * len(values))))
            spans = values[width - 1 :] - values[: len(values) - width + 1]
            start = int(np.argmin(spans))
            rows[name] = (values[start], values[start + width - 1])
    return pd.DataFrame.from_dict(rows, orient="index", columns=["lower", "upper"])
