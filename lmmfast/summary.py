"""lme4's printed summary of a fit (``summary(lmer(...))``), as text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmmfast.validation import check_choice

if TYPE_CHECKING:
    from lmmfast.result import LmmFit, MixedFit


def format_table(header: list[str], rows: list[list[str]], align_left: set[int]) -> list[str]:
    widths = [max([len(header[j])] + [len(r[j]) for r in rows]) for j in range(len(header))]

    def line(cells: list[str]) -> str:
        return " ".join(c.ljust(w) if j in align_left else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))

    return [line(header).rstrip(), *(line(r).rstrip() for r in rows)]


def _signif(value: float, digits: int = 4) -> str:
    if not np.isfinite(value):
        return "NaN"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.{max(digits, 1)}g}"


def _decimals(values: np.ndarray, digits: int = 4) -> int:
    """Decimals that show ``digits`` significant digits of the smallest non-zero magnitude,
    as R's ``format`` does for a column."""
    finite = np.abs(values[np.isfinite(values) & (values != 0)])
    if finite.size == 0:
        return 0
    return int(min(max(digits - 1 - np.floor(np.log10(finite.min())), 0), 8))


def format_column(values: np.ndarray, digits: int = 4) -> list[str]:
    places = _decimals(values, digits)
    return [f"{v:.{places}f}" if np.isfinite(v) else "NaN" for v in values]


def random_effects_lines(fit: MixedFit) -> list[str]:
    """The random-effects table of lme4's summary (with the residual where the model has one)."""
    rows: list[list[str]] = []
    variances: list[float] = []
    scale = 1.0 if fit.residual_sd is None else fit.residual_sd
    for term in fit.terms:
        cov = scale**2 * term.template @ term.template.T
        sd = np.sqrt(np.diag(cov))
        for i, column in enumerate(term.columns):
            corr = []
            for j in range(i):
                denominator = sd[i] * sd[j]
                corr.append(f"{cov[i, j] / denominator:.2f}" if denominator > 0 else "NaN")
            rows.append([term.name if i == 0 else "", column, "", "", " ".join(corr)])
            variances.append(cov[i, i])
    if fit.residual_sd is not None:
        rows.append(["Residual", "", "", "", ""])
        variances.append(fit.residual_sd**2)
    values = np.asarray(variances)
    for row, variance, sd_text in zip(rows, format_column(values), format_column(np.sqrt(values))):
        row[2], row[3] = variance, sd_text
    header = ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    has_corr = any(r[4] for r in rows)
    if not has_corr:
        header, rows = header[:4], [r[:4] for r in rows]
    return [" " + line for line in format_table(header, rows, {0, 1, 4})]


def residuals_and_random_effects_lines(fit: Any, quantiles: np.ndarray) -> list[str]:
    """The middle of lme4's summaries: the scaled residuals' quantiles (Min, 1Q, Median, 3Q,
    Max), the random effects, the numbers of observations and groups, what was dropped;
    ending with a blank line."""
    lines = ["", "Scaled residuals: "]
    if np.all(np.isnan(quantiles)):
        lines.append("(not computed: the data were read in chunks and their rows are not held)")
    else:
        lines.extend(format_table(["Min", "1Q", "Median", "3Q", "Max"], [[f"{q:.4f}" for q in quantiles]], set()))
    lines.extend(["", "Random effects:"])
    lines.extend(random_effects_lines(fit))
    groups = "; ".join(f"{name}, {count}" for name, count in fit.ngrps.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    if len(fit.dropped_rows):
        lines.append(f"({len(fit.dropped_rows)} rows with missing values dropped)")
    if fit.dropped_columns:
        lines.append(f"Fixed-effect columns dropped as rank deficient: {', '.join(fit.dropped_columns)}")
    lines.append("")
    return lines


#: The ``ddf`` a summary takes.
DDF_METHODS = ("auto", "satterthwaite", "kenward-roger", "none")

#: ``ddf="auto"`` adds Satterthwaite columns when they should take less than this (seconds)
#: or less than the fit took, judged from the optimiser's time per evaluation.
AUTO_DDF_SECONDS = 2.0


def _satterthwaite_cost(fit: LmmFit) -> float:
    """Estimated seconds for the Satterthwaite df, each evaluation costing a typical one of
    the fit (the median: a fresh process's first evaluation compiles or loads numba's
    kernels, which the df's evaluations will not repeat): 4(m+1) evaluations with the
    analytic gradient, about three evaluations' work each, where the factorisation has one;
    ~8(m+1)² + 8(m+1) evaluations otherwise."""
    m = len(fit.theta) + 1
    if fit.plan.path == "blocked":  # the blocked factorisation has the analytic gradient
        return 12 * m * fit.optsummary.seconds_per_evaluation
    return (8 * m * m + 8 * m) * fit.optsummary.seconds_per_evaluation


def format_p_value(p: float) -> str:
    return "< 2e-16" if p < 2e-16 else f"{p:.3g}"


def _fixed_effects(fit: LmmFit, table: pd.DataFrame | None) -> list[str]:
    if len(fit.beta) == 0:
        return ["No fixed effect coefficients"]
    names = [("(Intercept)" if n == "Intercept" else n) for n in fit.fixef_names]
    # Kenward–Roger's table has its adjusted standard errors
    se = np.sqrt(np.diag(fit.beta_covariance)) if table is None else table.std_error.to_numpy()
    estimates = format_column(fit.beta)
    errors = format_column(se)
    tvalues = [f"{v:.3f}" for v in fit.beta / se]
    if table is None:
        rows = [[n, e, s, t] for n, e, s, t in zip(names, estimates, errors, tvalues)]
        return format_table(["", "Estimate", "Std. Error", "t value"], rows, {0})
    dfs = [f"{v:.2f}" for v in table.df]
    pvalues = [format_p_value(v) for v in table.p_value]
    rows = [[n, e, s, d, t, p] for n, e, s, d, t, p in zip(names, estimates, errors, dfs, tvalues, pvalues)]
    return format_table(["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"], rows, {0})


def _abbreviate(name: str) -> str:
    name = "(Intr)" if name in ("Intercept", "(Intercept)") else name
    return name if len(name) <= 6 else name[:6]


def fixed_correlation_lines(fit: MixedFit) -> list[str]:
    """The correlation of the fixed effects, as lme4's summary prints it (2 to 12 of them)."""
    p = len(fit.beta)
    if p < 2 or p > 12:
        return []
    sd = np.sqrt(np.diag(fit.beta_covariance))
    corr = fit.beta_covariance / np.outer(sd, sd)
    names = [("(Intercept)" if n == "Intercept" else n) for n in fit.fixef_names]
    short = [_abbreviate(n) for n in names[:-1]]
    rows = [[names[i]] + [f"{corr[i, j]:.3f}" for j in range(i)] + [""] * (p - 1 - i) for i in range(1, p)]
    return ["", "Correlation of Fixed Effects:", *format_table(["", *short], rows, {0})]


def _convergence_note(fit: LmmFit) -> str:
    record = fit.optsummary
    if not record.converged:
        return f"optimizer ({record.algorithm}) stopped without converging: {record.return_code}"
    message = fit.convergence.message if fit.convergence is not None else "the check of the optimum failed"
    return f"optimizer ({record.algorithm}) converged, but the check of the optimum failed: {message}"


def wants_satterthwaite(fit: LmmFit, ddf: str) -> bool:
    """Whether a summary with this ``ddf`` shows Satterthwaite df and p-values:
    ``"satterthwaite"`` always, ``"none"`` never, ``"auto"`` when they are estimated to take
    under ``AUTO_DDF_SECONDS`` or under the fit's own time.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> wants_satterthwaite(fit, "auto"), wants_satterthwaite(fit, "none")
    (True, False)
    """
    check_choice("ddf", ddf, DDF_METHODS)
    if ddf == "auto" and not fit.has_data:
        return False  # a loaded fit shows the df its file holds (LmmResult.summary), none else
    return bool(len(fit.beta)) and (
        ddf == "satterthwaite" or (ddf == "auto" and _satterthwaite_cost(fit) < max(AUTO_DDF_SECONDS, fit.fit_seconds))
    )


def _engine(fit: LmmFit) -> list[str]:
    record = fit.optsummary
    return [
        f"Engine: {fit.engine}",
        f"Optimizer: {record.algorithm}, {record.n_evals} evaluations in {record.seconds:.3g} s "
        f"({record.return_code}); fit {fit.fit_seconds:.3g} s",
    ]


def format_summary(fit: LmmFit, ddf: str = "auto", table: pd.DataFrame | None = None, *, verbose: bool = False) -> str:
    """Render ``fit`` as lme4's ``summary()`` prints it (lmerTest's, with Satterthwaite df).

    ``table`` is the fixed effects' Satterthwaite table (:attr:`lmmfast.LmmFit.coef_table`)
    where :func:`wants_satterthwaite` says the summary shows it, else None: the summary then
    has lme4's layout, and with ``ddf="auto"`` says why the df were left out. ``verbose``
    adds the engine plan and the optimiser's record after the header.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> print(format_summary(fit).splitlines()[0])
    Linear mixed model fit by REML ['lmerMod']
    """
    lines: list[str] = []
    if fit.reml:
        lines.append("Linear mixed model fit by REML ['lmerMod']")
    else:
        lines.append("Linear mixed model fit by maximum likelihood  ['lmerMod']")
    lines.append(f"Formula: {fit.formula}")
    if fit.data_name:
        lines.append(f"   Data: {fit.data_name}")
    if fit.weights_name:
        lines.append(f"Weights: {fit.weights_name}")
    if verbose:
        lines.extend(_engine(fit))
    lines.append("")
    if fit.reml:
        lines.append(f"REML criterion at convergence: {fit.objective:.1f}")
    else:
        header = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        cells = [
            f"{fit.aic:.1f}",
            f"{fit.bic:.1f}",
            f"{fit.loglik:.1f}",
            f"{fit.objective:.1f}",
            str(fit.nobs - fit.npar),
        ]
        lines.extend(" " + row for row in format_table(header, [cells], set()))
    lines.extend(residuals_and_random_effects_lines(fit, fit.residual_quantiles))
    lines.append("Fixed effects:")
    check_choice("ddf", ddf, DDF_METHODS)
    lines.extend(_fixed_effects(fit, table if len(fit.beta) else None))
    if ddf == "kenward-roger" and table is not None:
        lines.append("(standard errors, df and p-values by Kenward and Roger's method)")
    if ddf == "auto" and table is None and len(fit.beta):
        lines.append(
            f"(Satterthwaite df and p-values left out: about {_satterthwaite_cost(fit):.0f} s to compute; "
            "summary(ddf='satterthwaite') or fit.coef_table computes them.)"
        )
    lines.extend(fixed_correlation_lines(fit))
    notes = []
    if fit.singular:
        notes.append("boundary (singular) fit: see help(lmmfast.SingularFitWarning)")
    if not fit.converged:
        notes.append(_convergence_note(fit))
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)
