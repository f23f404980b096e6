"""Simulation-based power: simulate a design from a model, refit, test, count.

:func:`power` answers "how often would this experiment detect this effect?" as R's simr
(``powerSim``) and Julia's MixedModelsSim do: from a fitted model (its estimates taken as the
truth, simr's default) or from a specification written down before any data exist
(:func:`model_spec`), on the model's own design or on one extended along a grouping factor
(more subjects, more items: :func:`extend_levels`). Each simulation draws a response, refits
by the one fit path (the design, its cross-products' pattern and the factor are prepared once
per design; each refit forms only the response's cross-products) and tests the chosen fixed
effects. :func:`power_curve` repeats that over a range of sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.design.data import as_pandas
from lmmfast.distributions import chi2_sf
from lmmfast.errors import ArgumentError, DataError
from lmmfast.fit import fit_prepared, response_estimates
from lmmfast.fitted import LmmResult
from lmmfast.formula import parse_formula
from lmmfast.inference.bootstrap import REPLICATE_CHECKS, check_client, run_replicates, simulate_model
from lmmfast.prepare import PreparedModel, prepare, with_response, without_columns
from lmmfast.validation import check_bool, check_count

#: The tests :func:`power` runs: likelihood ratio (ML fits, χ² with as many df as columns
#: tested), Wald z (χ² for several columns), and t tests with Satterthwaite's or
#: Kenward–Roger's df (REML fits, one column).
METHODS = ("lr", "wald", "satterthwaite", "kenward-roger")


@dataclass(frozen=True)
class ModelSpec:
    """A model written down before the data: formula, design and true parameters.

    Made by :func:`model_spec`; :func:`power` simulates from it.

    Attributes
    ----------
    formula : str
    data : pandas.DataFrame
        The design: every column the formula uses but the response.
    fixef : dict
        The true fixed effects by column name (formulaic's names, e.g. ``"cond[T.b]"``).
    theta : numpy.ndarray
        The relative covariance factors (lme4's θ) of the model's random terms.
    sigma : float
        The residual standard deviation.
    """

    formula: str
    data: pd.DataFrame = field(repr=False)
    fixef: dict[str, float]
    theta: np.ndarray
    sigma: float


def model_spec(
    formula: str,
    data: object,
    *,
    fixef: Mapping[str, float],
    sigma: float,
    varcorr: Mapping[str, float | Sequence[Sequence[float]] | np.ndarray],
) -> ModelSpec:
    """A model to simulate from, before any response exists.

    Parameters
    ----------
    formula : str
        Two-sided, as for :func:`lmmfast.lmm`; the response need not be a column of ``data``.
    data : DataFrame
        The design (pandas, polars, or a dict of columns).
    fixef : mapping
        Every fixed-effects column's true value, by its name (the names ``lmm`` would give).
    sigma : float
        The residual standard deviation.
    varcorr : mapping
        Per random term, by its grouping factor's name: its standard deviation (a term of
        one column) or its covariance matrix (columns in the term's order). Two terms on one
        grouping factor (``(1 | g) + (0 + x | g)``) are named ``g`` and ``g.2``.

    Returns
    -------
    ModelSpec

    Examples
    --------
    >>> import lmmfast
    >>> design = lmmfast.datasets.load("sleepstudy")
    >>> spec = model_spec(
    ...     "Reaction ~ Days + (Days | Subject)", design, fixef={"Intercept": 250.0, "Days": 5.0},
    ...     sigma=25.0, varcorr={"Subject": [[600.0, 10.0], [10.0, 35.0]]},
    ... )
    >>> spec.theta.round(3).tolist()
    [0.98, 0.016, 0.236]
    """
    frame = as_pandas(data)
    if not isinstance(sigma, (int, float)) or not np.isfinite(sigma) or sigma <= 0:
        raise ArgumentError(f"sigma must be a positive number (the residual standard deviation), got {sigma!r}.")
    model = _design_model(formula, frame)
    names = list(model.fixed.names)
    if not isinstance(fixef, Mapping) or set(fixef) != set(names):
        given = sorted(fixef) if isinstance(fixef, Mapping) else type(fixef).__name__
        raise ArgumentError(f"fixef must give a value for each fixed-effects column, {names}; got {given}.")
    values = {}
    for name in names:
        value = fixef[name]
        if not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
            raise ArgumentError(f"fixef[{name!r}] must be a finite number, got {value!r}.")
        values[name] = float(value)
    return ModelSpec(formula, frame, values, _theta_of(model, varcorr, float(sigma)), float(sigma))


def _term_keys(model: PreparedModel) -> list[str]:
    seen: dict[str, int] = {}
    keys = []
    for term in model.terms:
        seen[term.group] = seen.get(term.group, 0) + 1
        keys.append(term.group if seen[term.group] == 1 else f"{term.group}.{seen[term.group]}")
    return keys


def _theta_of(model: PreparedModel, varcorr: Mapping[str, Any], sigma: float) -> np.ndarray:
    """θ from each term's covariance matrix: the columns of chol(Σ / σ²), lme4's order."""
    keys = _term_keys(model)
    if not isinstance(varcorr, Mapping) or set(varcorr) != set(keys):
        given = sorted(varcorr) if isinstance(varcorr, Mapping) else type(varcorr).__name__
        raise ArgumentError(f"varcorr must give each random term's covariance, by {keys}; got {given}.")
    theta = np.zeros(model.layout.size)
    for index, (key, term) in enumerate(zip(keys, model.terms)):
        try:
            covariance = np.atleast_2d(np.asarray(varcorr[key], dtype=np.float64))
        except (TypeError, ValueError):
            raise ArgumentError(f"varcorr[{key!r}] must be numbers, got {varcorr[key]!r}.") from None
        if covariance.shape == (1, 1) and term.k == 1:
            covariance = covariance**2  # a standard deviation
        elif covariance.shape != (term.k, term.k):
            raise ArgumentError(
                f"varcorr[{key!r}] must be a {term.k} × {term.k} covariance matrix (columns {list(term.columns)})"
                + (" or a standard deviation" if term.k == 1 else "")
                + f", got shape {covariance.shape}."
            )
        if not np.all(np.isfinite(covariance)) or not np.allclose(covariance, covariance.T):
            raise ArgumentError(f"varcorr[{key!r}] must be a finite symmetric matrix.")
        try:
            factor = np.linalg.cholesky(covariance / sigma**2)
        except np.linalg.LinAlgError:
            raise ArgumentError(
                f"varcorr[{key!r}] is not positive definite; give a valid covariance matrix (variances > 0, "
                "correlations within (−1, 1))."
            ) from None
        mine = model.layout.term_of == index
        theta[mine] = factor[model.layout.rows[mine], model.layout.cols[mine]]
    return theta


def _design_model(
    formula: str, frame: pd.DataFrame, reml: bool = True, contrasts: Mapping[str, Any] | None = None
) -> PreparedModel:
    """The model prepared on a design, with a placeholder response where it has none (only
    the design is used: every simulation forms its own response's cross-products)."""
    response = parse_formula(formula).response
    if response is None:
        raise ArgumentError(f"formula must have a response, as in 'y ~ x + (1 | g)'; got {formula!r}.")
    design = frame
    if response not in frame.columns:
        design = frame.assign(**{response: np.random.default_rng(0).standard_normal(len(frame))})
    return prepare(formula, design, reml=reml, contrasts=contrasts)


def extend_levels(data: object, along: str, n: int) -> pd.DataFrame:
    """The design with ``n`` levels of the grouping factor ``along``: its first ``n`` levels
    (in order of appearance) where it has as many, else its levels' rows copied under new
    labels (``S1``, then ``S1.2``, ``S1.3`` …) until there are ``n`` — simr's ``extend``.
    Copies keep whatever each level's rows hold (conditions, items, trials), so a
    counterbalanced design stays counterbalanced when ``n`` is a multiple of its cycle.

    Examples
    --------
    >>> frame = pd.DataFrame({"g": ["a", "a", "b"], "x": [1, 2, 3]})
    >>> extend_levels(frame, "g", 3).g.tolist()
    ['a', 'a', 'b', 'a.2', 'a.2']
    >>> extend_levels(frame, "g", 1).x.tolist()
    [1, 2]
    """
    frame = as_pandas(data)
    if along not in frame.columns:
        raise ArgumentError(f"along must be a column of the design; {along!r} is not among {list(frame.columns)}.")
    n = check_count("n", n)
    labels = frame[along]
    levels = pd.unique(labels)
    if n <= len(levels):
        return frame[labels.isin(set(levels[:n]))].reset_index(drop=True)
    text = labels.astype(str)
    parts = [frame.assign(**{along: text})]
    added = len(levels)
    copy = 2
    while added < n:
        chosen = levels[: min(len(levels), n - added)]
        rows = frame[labels.isin(set(chosen))]
        parts.append(rows.assign(**{along: rows[along].astype(str) + f".{copy}"}))
        added += len(chosen)
        copy += 1
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class PowerResult:
    """How often the test rejected, over the simulations.

    Attributes
    ----------
    test : tuple of str
        The fixed-effects columns tested (jointly, where several).
    method : str
        One of :data:`METHODS`.
    alpha : float
    nsim : int
    rejections : int
    power : float
        rejections / nsim.
    lower, upper : float
        The exact (Clopper–Pearson) 95% confidence interval of the power: the Monte Carlo
        uncertainty, which more simulations narrow.
    p_values : numpy.ndarray
        Each simulation's p-value.
    not_converged : int
        Simulations whose refit did not pass the convergence check (their tests count).
    design : str
        The simulated design: rows and levels of each grouping factor.
    """

    test: tuple[str, ...]
    method: str
    alpha: float
    nsim: int
    rejections: int
    power: float
    lower: float
    upper: float
    p_values: np.ndarray = field(repr=False)
    not_converged: int
    design: str

    def __str__(self) -> str:
        tested = " and ".join(self.test)
        return (
            f"Power for {tested} ({_METHOD_NAMES[self.method]}, α = {self.alpha:g}): {100 * self.power:.1f}% "
            f"(95% CI {100 * self.lower:.1f}–{100 * self.upper:.1f}%), {self.rejections} of {self.nsim} "
            f"simulations; design: {self.design}"
            + (f"; {self.not_converged} refits did not converge" if self.not_converged else "")
        )


_METHOD_NAMES = {
    "lr": "likelihood-ratio test",
    "wald": "Wald z test",
    "satterthwaite": "t test, Satterthwaite df",
    "kenward-roger": "t test, Kenward–Roger df",
}


def _tested_columns(names: Sequence[str], model: PreparedModel, test: str | Sequence[str]) -> list[int]:
    """Indices of the columns ``test`` names: column names, or a term of the fixed part
    (all its columns)."""
    wanted = [test] if isinstance(test, str) else list(test)
    if not wanted or not all(isinstance(name, str) for name in wanted):
        raise ArgumentError(f"test must name fixed-effects columns or terms, one of {list(names)}; got {test!r}.")
    slices = getattr(model.fixed.spec, "term_slices", {}) or {}
    by_term = {str(term): range(piece.start, piece.stop) for term, piece in slices.items()}
    kept = list(model.fixed.kept)
    columns: list[int] = []
    for name in wanted:
        if name in names:
            columns.append(list(names).index(name))
        elif name in by_term and kept:
            columns.extend(kept.index(c) for c in by_term[name] if c in kept)
        else:
            raise ArgumentError(
                f"test names {name!r}, which is not a fixed-effects column or term; the columns are {list(names)}."
            )
    return sorted(set(columns))


def _one_test(payload: tuple, seed: np.random.SeedSequence) -> tuple[np.ndarray, bool]:
    """One simulation: (p-value,) and whether the refit converged."""
    model, reduced, beta, templates, sigma, columns, method = payload
    y = simulate_model(model, beta, templates, sigma, 1, np.random.default_rng(seed))[:, 0]
    if method in ("lr", "wald"):  # the estimates are all these tests read
        full = response_estimates(model, y)
        if method == "lr":
            small = response_estimates(reduced, y)
            statistic = max(small.objective - full.objective, 0.0)
        else:
            estimate = full.beta[columns]
            covariance = full.beta_covariance[np.ix_(columns, columns)]
            statistic = float(estimate @ np.linalg.solve(covariance, estimate))
        return np.array([float(chi2_sf(statistic, len(columns)))]), full.converged
    fit = fit_prepared(with_response(model, y), checks=REPLICATE_CHECKS, progress=False)
    table = LmmResult.of(fit).fixef_table(ddf=method)
    return np.array([float(table["p_value"].iloc[columns[0]])]), fit.converged


def _design_label(model: PreparedModel) -> str:
    groups = {term.group: term.n_levels for term in model.terms}
    return f"{len(model.fixed.y)} rows; " + ", ".join(f"{g} {levels}" for g, levels in groups.items())


def power(
    model: LmmResult | ModelSpec,
    test: str | Sequence[str],
    *,
    nsim: int = 100,
    alpha: float = 0.05,
    method: str = "lr",
    along: str | None = None,
    n: int | None = None,
    effect: float | None = None,
    seed: int | np.random.SeedSequence | None = None,
    processes: int = 1,
    progress: bool = False,
    client: Any = None,
) -> PowerResult:
    """The power of a test of fixed effects, by simulation (simr's ``powerSim``).

    Parameters
    ----------
    model : LmmResult or ModelSpec
        A fit, whose estimates (β̂, θ̂, σ̂) are taken as the truth (as simr does: set the
        effect of interest with ``effect=``, observed effects make poor power targets), or a
        :func:`model_spec`.
    test : str or list of str
        The fixed-effects column(s) tested, e.g. ``"Days"``, or a term of the fixed part
        (``"recipe"``: all its columns, jointly).
    nsim : int, default 100
        Simulations; the power's confidence interval narrows as 1/√nsim.
    alpha : float, default 0.05
        The test's level.
    method : {"lr", "wald", "satterthwaite", "kenward-roger"}, default "lr"
        Likelihood-ratio test between ML fits with and without the tested columns (χ², as
        simr's ``"lr"``); Wald z (χ²) from the REML fit; or the t test of one column with
        Satterthwaite's or Kenward–Roger's df (lmerTest's).
    along, n : str and int, optional
        Simulate a design with ``n`` levels of the grouping factor ``along`` instead of the
        model's own (:func:`extend_levels`).
    effect : float, optional
        The true value of the tested column (one column only), replacing the model's.
    seed : int, optional
        Simulation i draws from ``SeedSequence(seed).spawn(nsim)[i]``: the same result in one
        process or several.
    processes : int, default 1
    progress : bool, default False
    client : distributed.Client, optional
        Spread the simulations over a Dask cluster's workers instead of ``processes``; the
        same p-values.

    Returns
    -------
    PowerResult

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> result = power(fit, "Days", nsim=20, effect=3.0, seed=1)
    >>> result.nsim, 0.0 <= result.power <= 1.0
    (20, True)
    """
    nsim = check_count("nsim", nsim)
    processes = check_count("processes", processes)
    check_bool("progress", progress)
    check_client(client, processes)
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {list(METHODS)}, got {method!r}.")
    if not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ArgumentError(f"alpha must be a number between 0 and 1, got {alpha!r}.")
    formula, frame, contrasts, truth = _source(model)
    if (along is None) != (n is None):
        raise ArgumentError("along and n go together: the grouping factor to extend and its number of levels.")
    if along is not None:
        assert n is not None
        frame = extend_levels(frame, along, n)
    design = _design_model(formula, frame, reml=method != "lr", contrasts=contrasts)
    names = list(design.fixed.names)
    beta_by_name, theta, sigma = truth
    if list(beta_by_name) != names:
        raise DataError(
            f"The extended design has fixed-effects columns {names}, the model {list(beta_by_name)}; extend along "
            "a grouping factor whose levels do not enter the fixed effects."
        )
    columns = _tested_columns(names, design, test)
    beta = np.array([beta_by_name[name] for name in names])
    if effect is not None:
        if len(columns) != 1:
            raise ArgumentError("effect sets the value of one tested column; test names several.")
        if not isinstance(effect, (int, float)) or not np.isfinite(effect):
            raise ArgumentError(f"effect must be a finite number, got {effect!r}.")
        beta[columns[0]] = float(effect)
    if method in ("satterthwaite", "kenward-roger") and len(columns) != 1:
        raise ArgumentError(f"method={method!r} tests one column; use method='lr' or 'wald' for several jointly.")
    reduced = without_columns(design, columns) if method == "lr" else None
    templates = [design.layout.template(theta, index) for index in range(len(design.terms))]
    payload = (design, reduced, beta, templates, sigma, columns, method)
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    seeds = root.spawn(nsim)
    results = run_replicates(
        payload, _one_test, seeds, processes=processes, progress=progress, desc="power", client=client
    )
    p_values = np.array([row[0] for row, _ in results])
    rejections = int(np.sum(p_values < alpha))
    from scipy import stats  # the binomial interval only: scipy.stats is slow to import

    interval = stats.binomtest(rejections, nsim).proportion_ci(confidence_level=0.95, method="exact")
    return PowerResult(
        test=tuple(names[c] for c in columns),
        method=method,
        alpha=float(alpha),
        nsim=nsim,
        rejections=rejections,
        power=rejections / nsim,
        lower=float(interval.low),
        upper=float(interval.high),
        p_values=p_values,
        not_converged=sum(1 for _, converged in results if not converged),
        design=_design_label(design),
    )


def _source(
    model: LmmResult | ModelSpec,
) -> tuple[str, pd.DataFrame, dict[str, Any] | None, tuple[dict[str, float], np.ndarray, float]]:
    """Formula, design, contrasts and truth (β by name, θ, σ) of a fit or a specification."""
    if isinstance(model, ModelSpec):
        return model.formula, model.data, None, (dict(model.fixef), model.theta, model.sigma)
    if isinstance(model, LmmResult):
        if model.model.weights is not None:
            raise ArgumentError("power does not simulate fits with prior weights; fit the model without weights.")
        prepared = model.model
        prepared.require_rows("power from a fitted model (its design is extended and simulated)")
        truth = (dict(zip(model.fixef_names, model.beta)), model.theta, model.sigma)
        return prepared.formula.text, prepared.model_frame.frame, dict(prepared.formula.codings), truth
    raise ArgumentError(f"model must be a fit of lmmfast.lmm or a lmmfast.model_spec, got {type(model).__name__}.")


@dataclass(frozen=True)
class PowerCurve:
    """Power over a range of sizes of one grouping factor (simr's ``powerCurve``).

    Attributes
    ----------
    along : str
    results : tuple of PowerResult
        One per size, in order.
    """

    along: str
    sizes: tuple[int, ...]
    results: tuple[PowerResult, ...] = field(repr=False)

    @property
    def table(self) -> pd.DataFrame:
        """One row per size: the size, power, its 95% interval, rejections, simulations."""
        return pd.DataFrame(
            {
                self.along: list(self.sizes),
                "power": [r.power for r in self.results],
                "lower": [r.lower for r in self.results],
                "upper": [r.upper for r in self.results],
                "rejections": [r.rejections for r in self.results],
                "nsim": [r.nsim for r in self.results],
            }
        )

    def plot(self, *, target: float | None = 0.8, ax: Any = None) -> Any:
        """Power against size with its intervals, and the ``target`` power as a line
        (matplotlib; ``pip install lmmfast[plot]``)."""
        from lmmfast.plots import plot_power_curve

        return plot_power_curve(self.table, self.along, target=target, ax=ax)

    def __str__(self) -> str:
        first = self.results[0]
        lines = [f"Power for {' and '.join(first.test)} by number of {self.along} ({_METHOD_NAMES[first.method]})"]
        lines += [
            f"  {size:>6}: {100 * r.power:5.1f}% ({100 * r.lower:.1f}–{100 * r.upper:.1f}%)"
            for size, r in zip(self.sizes, self.results)
        ]
        return "\n".join(lines)


def power_curve(
    model: LmmResult | ModelSpec,
    test: str | Sequence[str],
    *,
    along: str,
    sizes: Sequence[int],
    nsim: int = 100,
    seed: int | None = None,
    **options: Any,
) -> PowerCurve:
    """:func:`power` at each number of levels in ``sizes`` of the grouping factor ``along``;
    the other arguments as there. Each size's simulations draw from their own seeds
    (``SeedSequence(seed).spawn(len(sizes))``).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> curve = power_curve(fit, "Days", along="Subject", sizes=[6, 12], nsim=10, effect=3.0, seed=1)
    >>> curve.table.columns.tolist()
    ['Subject', 'power', 'lower', 'upper', 'rejections', 'nsim']
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise ArgumentError(f"sizes must be a list of numbers of levels, got {sizes!r}.")
    checked = tuple(check_count("sizes", size) for size in sizes)
    seeds = np.random.SeedSequence(seed).spawn(len(checked))
    results = tuple(
        power(model, test, along=along, n=size, nsim=nsim, seed=child, **options) for size, child in zip(checked, seeds)
    )
    return PowerCurve(along, checked, results)
