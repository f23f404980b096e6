"""Pictures of a fit: caterpillar plot, partial pooling, residual diagnostics, profiles and
bootstrap distributions.

matplotlib is an optional dependency (``pip install lmmfast[plot]``), imported when a plot
is drawn. Every function returns what it drew on — the ``Axes`` of a single panel, the
``Figure`` of several — and takes ``ax=``: an ``Axes`` (a sequence of them for several
panels) to draw on instead of a new figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.distributions import normal_quantile
from lmmfast.errors import ArgumentError, MissingDependencyError
from lmmfast.inference.condvar import ranef_table
from lmmfast.result import LmmFit
from lmmfast.validation import check_level

#: Panels per row of a new figure.
PANELS_PER_ROW = 3

#: A caterpillar panel labels its levels when it has at most this many.
MAX_LABELLED_LEVELS = 40


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MissingDependencyError(
            "Plots need matplotlib, an optional dependency: pip install 'lmmfast[plot]' (or matplotlib)."
        ) from error
    return plt


def _panels(count: int, ax: Any) -> tuple[Any, list[Any]]:
    """The figure and ``count`` axes to draw on: new ones, or those given as ``ax``."""
    if ax is None:
        plt = _pyplot()
        columns = min(count, PANELS_PER_ROW)
        rows = math.ceil(count / columns)
        figure, grid = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.2 * rows), squeeze=False)
        axes = list(grid.ravel())
        for spare in axes[count:]:
            spare.remove()
        return figure, axes[:count]
    axes = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
    if len(axes) != count:
        raise ArgumentError(f"ax must be {count} axes, one per panel, got {len(axes)}.")
    return axes[0].figure, axes


def plot_ranef(fit: LmmFit, *, level: float = 0.95, ax: Any = None, table: pd.DataFrame | None = None) -> Any:
    """Caterpillar plot of the random effects (lme4's ``dotplot(ranef(m, condVar = TRUE))``):
    per grouping factor and column, the conditional modes sorted, with intervals of
    ±z·(conditional sd) at ``level``. ``table`` is the fit's ``ranef_table()`` where the fit
    computes it itself (a generalized fit's conditional variances are its own).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per grouping factor and column.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> figure = plot_ranef(fit)
    >>> [axis.get_title() for axis in figure.axes]
    ['Subject: (Intercept)', 'Subject: Days']
    """
    z = float(normal_quantile(0.5 + check_level(level) / 2))
    table = ranef_table(fit) if table is None else table
    panels = list(dict.fromkeys(zip(table.grpvar, table.term)))
    figure, axes = _panels(len(panels), ax)
    for axis, (group, column) in zip(axes, panels):
        rows = table[(table.grpvar == group) & (table.term == column)].sort_values("condval", kind="stable")
        position = np.arange(len(rows))
        axis.errorbar(
            rows.condval.to_numpy(), position, xerr=z * rows.condsd.to_numpy(), fmt="o", markersize=3, capsize=0
        )
        axis.axvline(0.0, color="grey", linewidth=0.8)
        if len(rows) <= MAX_LABELLED_LEVELS:
            axis.set_yticks(position, labels=[str(level_name) for level_name in rows.grp])
        axis.set_title(f"{group}: {column}")
        axis.set_xlabel("conditional mode")
    return figure


def _term_on(fit: LmmFit, group: str | None) -> int:
    """The index of the term with an intercept and one slope on ``group`` (the first such
    term where ``group`` is None)."""
    for index, term in enumerate(fit.terms):
        if (group is None or term.group == group) and len(term.columns) == 2 and term.columns[0] == "(Intercept)":
            return index
    where = "any grouping factor" if group is None else f"{group!r}"
    raise ArgumentError(
        f"plot_pooling needs a random intercept and one random slope, (x | g), on {where}; this model's terms "
        f"are {', '.join('(' + ' + '.join(t.columns) + ' | ' + t.group + ')' for t in fit.terms)}."
    )


def pooling_table(fit: LmmFit, group: str | None = None) -> pd.DataFrame:
    """Per level of ``group``: intercept and slope of its own least-squares fit (no pooling),
    and of the mixed model (partial pooling); the complete-pooling fit (one regression of all
    rows) in the attribute ``attrs["complete"]``.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> table = pooling_table(fit)
    >>> list(table.columns), table.attrs["complete"].round(2).tolist()
    (['ols_intercept', 'ols_slope', 'mixed_intercept', 'mixed_slope'], [251.41, 10.47])
    """
    index = _term_on(fit, group)
    fit.model.require_rows("The pooling table (each level's own least-squares fit)")
    result, term = fit.terms[index], fit.model.terms[index]
    y = fit.model.fixed.y
    own = np.full((len(result.levels), 2), np.nan)
    for level in range(len(result.levels)):
        rows = term.codes == level
        X = term.values[rows]
        if np.linalg.matrix_rank(X) == 2:
            own[level] = np.linalg.lstsq(X, y[rows], rcond=None)[0]
    coef = fit.coef[result.group]
    names = ["Intercept", result.columns[1]]
    table = pd.DataFrame(
        {
            "ols_intercept": own[:, 0],
            "ols_slope": own[:, 1],
            "mixed_intercept": coef[names[0]].to_numpy(),
            "mixed_slope": coef[names[1]].to_numpy(),
        },
        index=pd.Index(result.levels, name=result.group),
    )
    table.attrs["complete"] = np.linalg.lstsq(term.values, y, rcond=None)[0]
    return table


def plot_pooling(fit: LmmFit, group: str | None = None, *, ax: Any = None) -> Any:
    """The partial-pooling picture: per level of ``group``, the intercept and slope of its
    own least-squares fit (open circles) and of the mixed model (filled), with an arrow from
    one to the other, and the complete-pooling fit (a cross). Needs a term ``(x | group)``.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> plot_pooling(fit).get_xlabel()
    '(Intercept)'
    """
    table = pooling_table(fit, group)
    result = fit.terms[_term_on(fit, group)]
    _, (axis,) = _panels(1, ax)
    axis.scatter(table.ols_intercept, table.ols_slope, facecolors="none", edgecolors="C0", label="no pooling")
    axis.scatter(table.mixed_intercept, table.mixed_slope, color="C1", label="partial pooling (mixed model)")
    for row in table.itertuples():
        if np.isfinite(row.ols_intercept):
            axis.annotate(
                "",
                xy=(row.mixed_intercept, row.mixed_slope),
                xytext=(row.ols_intercept, row.ols_slope),
                arrowprops={"arrowstyle": "->", "color": "grey", "linewidth": 0.7},
            )
    complete = table.attrs["complete"]
    axis.scatter([complete[0]], [complete[1]], marker="X", s=80, color="C3", label="complete pooling")
    axis.set_xlabel(result.columns[0])
    axis.set_ylabel(result.columns[1])
    axis.set_title(f"Partial pooling by {result.group}")
    axis.legend(fontsize="small")
    return axis


def plot_residuals(fit: LmmFit, *, ax: Any = None) -> Any:
    """Residual diagnostics: residuals against fitted values, a normal QQ plot of the scaled
    residuals and of the random effects (each column's modes over its estimated sd), and the
    scale-location plot (√|scaled residual| against fitted values).

    Returns
    -------
    matplotlib.figure.Figure
        Four panels.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> [axis.get_title() for axis in plot_residuals(fit).axes][:2]
    ['Residuals vs fitted', 'Normal QQ: scaled residuals']
    """
    if fit.prepared is not None:
        fit.prepared.require_rows("The residual plot")
    fitted, pearson = fit.fitted(), fit.residuals("pearson")
    scaled = pearson / fit.sigma
    figure, axes = _panels(4, ax)
    axes[0].scatter(fitted, pearson, s=8)
    axes[0].axhline(0.0, color="grey", linewidth=0.8)
    axes[0].set(title="Residuals vs fitted", xlabel="fitted", ylabel="residual")
    _qq(axes[1], scaled, "Normal QQ: scaled residuals")
    _qq(axes[2], _standardised_modes(fit.terms, fit.sigma), "Normal QQ: random effects")
    axes[3].scatter(fitted, np.sqrt(np.abs(scaled)), s=8)
    axes[3].set(title="Scale-location", xlabel="fitted", ylabel="√|scaled residual|")
    return figure


def _standardised_modes(terms: Sequence[Any], scale: float) -> np.ndarray:
    """Every random-effects column's conditional modes over its estimated sd (scale · the
    template's row norm), pooled; columns with a zero sd left out."""
    standardised: list[np.ndarray] = []
    for term in terms:
        sd = scale * np.sqrt(np.diag(term.template @ term.template.T))
        standardised.extend((term.modes[:, j] / sd[j]) for j in range(len(sd)) if sd[j] > 0)
    return np.concatenate(standardised) if standardised else np.zeros(0)


def binned_residuals(mu: np.ndarray, y: np.ndarray, variance: np.ndarray, bins: int | None = None) -> pd.DataFrame:
    """Binned residuals, as in Gelman and Hill's binned residual plot: the rows in ``bins``
    groups of about equal size by their fitted mean ``mu`` (default √n groups), and per group
    the mean fitted value, the mean residual y − μ and its standard error √(Σ Var(yᵢ)) / m,
    from the model's own variances ``variance`` (Var(yᵢ) on the response scale). In a model
    that fits, about 95% of the mean residuals lie within ±2 standard errors.

    Examples
    --------
    >>> mu = np.linspace(0.1, 0.9, 100)
    >>> table = binned_residuals(mu, (mu > 0.5).astype(float), mu * (1 - mu), bins=4)
    >>> list(table.columns), len(table)
    (['fitted', 'residual', 'std_error', 'rows'], 4)
    """
    n = len(mu)
    if bins is None:
        bins = max(1, round(math.sqrt(n)))
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or not 1 <= bins <= max(n, 1):
        raise ArgumentError(f"bins must be a whole number from 1 to the number of observations ({n}), got {bins!r}.")
    groups = np.array_split(np.argsort(mu, kind="stable"), int(bins))
    rows = [
        (mu[g].mean(), (y[g] - mu[g]).mean(), math.sqrt(variance[g].sum()) / len(g), len(g)) for g in groups if len(g)
    ]
    return pd.DataFrame(rows, columns=["fitted", "residual", "std_error", "rows"])


def plot_generalized_residuals(
    table: pd.DataFrame, eta: np.ndarray, pearson: np.ndarray, terms: Sequence[Any], *, ax: Any = None
) -> Any:
    """A generalized fit's residual diagnostics: the binned residuals (``table``, from
    :func:`binned_residuals`) with their ±2 standard-error band, the Pearson residuals against
    the linear predictor ``eta``, and a normal QQ plot of the random effects (each column's
    modes over its sd).

    Returns
    -------
    matplotlib.figure.Figure
        Three panels.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")
    >>> [axis.get_title() for axis in fit.plot_residuals().axes]
    ['Binned residuals', 'Pearson residuals vs linear predictor', 'Normal QQ: random effects']
    """
    figure, axes = _panels(3, ax)
    band = 2.0 * table.std_error.to_numpy()
    axes[0].fill_between(table.fitted, -band, band, color="grey", alpha=0.25, linewidth=0)
    axes[0].scatter(table.fitted, table.residual, s=10)
    axes[0].axhline(0.0, color="grey", linewidth=0.8)
    axes[0].set(title="Binned residuals", xlabel="mean fitted value", ylabel="mean residual (±2 SE)")
    axes[1].scatter(eta, pearson, s=8)
    axes[1].axhline(0.0, color="grey", linewidth=0.8)
    axes[1].set(title="Pearson residuals vs linear predictor", xlabel="linear predictor", ylabel="Pearson residual")
    _qq(axes[2], _standardised_modes(terms, 1.0), "Normal QQ: random effects")
    return figure


def _qq(axis: Any, values: np.ndarray, title: str) -> None:
    ordered = np.sort(values)
    n = len(ordered)
    theoretical = normal_quantile((np.arange(1, n + 1) - 0.5) / n) if n else np.zeros(0)
    axis.scatter(theoretical, ordered, s=8)
    if n:
        axis.plot(theoretical, theoretical * np.std(ordered) + np.mean(ordered), color="grey", linewidth=0.8)
    axis.set(title=title, xlabel="normal quantile", ylabel="sample quantile")


def plot_profile(traces: pd.DataFrame, *, ax: Any = None) -> Any:
    """ζ against each parameter (lme4's ``xyplot(profile(m))``), from the traces of
    :meth:`lmmfast.LmmResult.profile`; a straight line means a quadratic log-likelihood,
    and the dotted lines mark ζ = ±1.96.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per parameter.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> [axis.get_title() for axis in plot_profile(fit.profile(points=5)).axes]
    ['sd_(Intercept)|Batch', 'sigma', 'Intercept']
    """
    if not isinstance(traces, pd.DataFrame) or not {"parameter", "value", "zeta"} <= set(traces.columns):
        raise ArgumentError("plot_profile needs the traces of fit.profile() (columns parameter, value, zeta).")
    parameters = list(dict.fromkeys(traces.parameter))
    figure, axes = _panels(len(parameters), ax)
    for axis, name in zip(axes, parameters):
        rows = traces[traces.parameter == name]
        axis.plot(rows.value, rows.zeta, marker="o", markersize=3)
        for bound in (-1.96, 0.0, 1.96):
            axis.axhline(bound, color="grey", linewidth=0.6, linestyle=":" if bound else "-")
        axis.set(title=name, xlabel="value", ylabel="ζ")
    return figure


def plot_bootstrap(replicates: pd.DataFrame, *, columns: Sequence[str] | None = None, ax: Any = None) -> Any:
    """Histograms (as densities) of bootstrap replicates (:meth:`lmmfast.LmmResult.bootstrap`),
    one panel per column.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> len(plot_bootstrap(fit.bootstrap(20, seed=1), columns=["sigma"]).axes)
    1
    """
    if not isinstance(replicates, pd.DataFrame):
        raise ArgumentError("plot_bootstrap needs the replicates of fit.bootstrap() (a DataFrame).")
    names = list(replicates.columns if columns is None else columns)
    unknown = [name for name in names if name not in replicates.columns]
    if unknown:
        raise ArgumentError(f"columns {unknown} are not in the replicates ({', '.join(map(str, replicates.columns))}).")
    figure, axes = _panels(len(names), ax)
    for axis, name in zip(axes, names):
        values = replicates[name].to_numpy(dtype=np.float64)
        axis.hist(values[np.isfinite(values)], bins="auto", density=True)
        axis.set(title=name, xlabel="value", ylabel="density")
    return figure


def plot_power_curve(table: pd.DataFrame, along: str, *, target: float | None = 0.8, ax: Any = None) -> Any:
    """Power against the number of levels of ``along`` (a :class:`lmmfast.power.PowerCurve`'s
    ``table``), with each point's 95% interval and a line at the ``target`` power.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> table = pd.DataFrame({"Subject": [10, 20], "power": [0.4, 0.7], "lower": [0.3, 0.6], "upper": [0.5, 0.8]})
    >>> plot_power_curve(table, "Subject").axes[0].get_ylabel()
    'power'
    """
    if target is not None and not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise ArgumentError(f"target must be a power between 0 and 1 (or None for no line), got {target!r}.")
    figure, (axis,) = _panels(1, ax)
    sizes = table[along].to_numpy(dtype=np.float64)
    power = table["power"].to_numpy(dtype=np.float64)
    below = power - table["lower"].to_numpy(dtype=np.float64)
    above = table["upper"].to_numpy(dtype=np.float64) - power
    axis.errorbar(sizes, power, yerr=np.vstack([below, above]), marker="o", capsize=3)
    if target is not None:
        axis.axhline(target, linestyle="--", color="grey", linewidth=1)
    axis.set(xlabel=f"number of {along}", ylabel="power", ylim=(0.0, 1.02), title="power (95% intervals)")
    return figure
