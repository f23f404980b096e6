"""The frozen result of a fit: estimates, variance components, conditional modes, record."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmmfast.convergence import ConvergenceCheck
from lmmfast.optimize import SINGULAR_TOLERANCE, OptSummary
from lmmfast.validation import check_choice, check_level

if TYPE_CHECKING:
    from lmmfast.api import PreparedModel


@dataclass(frozen=True)
class RandomTermResult:
    """One random-effects term of a fitted model (lme4's order).

    Attributes
    ----------
    name : str
        Its VarCorr name (``Subject``, ``Subject.1`` for a second term on Subject).
    group : str
        The grouping factor (``Subject``).
    columns : tuple of str
    levels : numpy.ndarray
    template : numpy.ndarray
        The k×k lower-triangular Λ template at the optimum.
    modes : numpy.ndarray, shape (n_levels, k)
        Conditional modes b̂.
    """

    name: str
    group: str
    columns: tuple[str, ...]
    levels: np.ndarray
    template: np.ndarray
    modes: np.ndarray


@dataclass(frozen=True, eq=False, repr=False)
class LmmResult:
    """A fitted linear mixed model. Immutable; every statistic is read off what is stored.

    Use :func:`lmmfast.lmm` to make one.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(float(fit.fixef["Days"]), 3), fit.nobs
    (10.467, 180)
    """

    formula: str
    reml: bool
    data_name: str | None
    weights_name: str | None
    fixef_names: tuple[str, ...]
    beta: np.ndarray
    beta_covariance: np.ndarray
    sigma: float
    theta: np.ndarray
    theta_names: tuple[str, ...]
    terms: tuple[RandomTermResult, ...]
    objective: float
    nobs: int
    dropped_rows: np.ndarray
    dropped_columns: tuple[str, ...]
    scaled_residuals: np.ndarray
    fitted_values: np.ndarray
    optsummary: OptSummary
    convergence: ConvergenceCheck | None
    fit_seconds: float
    version: str
    model: PreparedModel = field(repr=False)

    # --- likelihood summaries -------------------------------------------------------------
    @property
    def criterion(self) -> str:
        """``"REML"`` or ``"ML"``."""
        return "REML" if self.reml else "ML"

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, θ, and σ."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def loglik(self) -> float:
        """Log-likelihood (the REML log-likelihood for REML fits, as lme4's ``logLik``)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        """Akaike's information criterion, −2 logLik + 2 npar."""
        return self.objective + 2.0 * self.npar

    @property
    def bic(self) -> float:
        """Schwarz's criterion, −2 logLik + log(n) npar."""
        return self.objective + np.log(self.nobs) * self.npar

    @property
    def converged(self) -> bool:
        """Whether the optimiser stopped on its tolerances and, where it was run, the
        finite-difference check of the optimum passed."""
        return self.optsummary.converged and (self.convergence is None or self.convergence.ok)

    @property
    def n_evals(self) -> int:
        """Objective evaluations used."""
        return self.optsummary.n_evals

    @property
    def singular(self) -> bool:
        """lme4's ``isSingular``: some template diagonal is (near) zero — a boundary fit."""
        diagonal = np.concatenate([np.diag(t.template) for t in self.terms])
        return bool(np.any(diagonal < SINGULAR_TOLERANCE))

    # --- estimates ----------------------------------------------------------------------------
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates, indexed by formulaic's column names."""
        return pd.Series(self.beta, index=list(self.fixef_names), name="estimate")

    @property
    def stderr(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.beta_covariance)), index=list(self.fixef_names), name="std_error")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effects estimates."""
        names = list(self.fixef_names)
        return pd.DataFrame(self.beta_covariance, index=names, columns=names)

    @property
    def ngrps(self) -> dict[str, int]:
        """Number of levels per grouping factor (lme4's order)."""
        return {t.group: len(t.levels) for t in self.terms}

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as R's ``as.data.frame(VarCorr(m))``.

        Columns ``grp, var1, var2, vcov, sdcor``: per term the variances, then the covariances
        (``sdcor`` the correlation), the residual last.
        """
        rows: list[tuple[str, str | None, str | None, float, float]] = []
        for term in self.terms:
            cov = self.sigma**2 * term.template @ term.template.T
            sd = np.sqrt(np.diag(cov))
            for i, column in enumerate(term.columns):
                rows.append((term.name, column, None, cov[i, i], sd[i]))
            for j in range(len(term.columns)):
                for i in range(j + 1, len(term.columns)):
                    denominator = sd[i] * sd[j]
                    corr = cov[i, j] / denominator if denominator > 0 else np.nan
                    rows.append((term.name, term.columns[j], term.columns[i], cov[i, j], corr))
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        grp, var1, var2, vcov, sdcor = zip(*rows)
        return pd.DataFrame(
            {
                "grp": pd.Series(grp, dtype=object),
                "var1": pd.Series(var1, dtype=object),
                "var2": pd.Series(var2, dtype=object),
                "vcov": np.asarray(vcov, dtype=np.float64),
                "sdcor": np.asarray(sdcor, dtype=np.float64),
            }
        )

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor: rows are levels, columns the terms' columns."""
        out: dict[str, pd.DataFrame] = {}
        for term in self.terms:
            frame = pd.DataFrame(term.modes, index=pd.Index(term.levels, name=term.group), columns=list(term.columns))
            out[term.group] = frame if term.group not in out else pd.concat([out[term.group], frame], axis=1)
        return out

    @property
    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef()``: per grouping factor, the fixed effects plus each level's
        conditional modes — every level's own intercept and slopes.

        One DataFrame per grouping factor, rows its levels, columns named as the fixed
        effects (``Intercept``, ``Days``). A column with a random effect but no fixed effect
        comes first, with a fixed part of 0 (as lme4).

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> fit.coef["Subject"].loc["308"].round(2).to_dict()
        {'Intercept': 253.66, 'Days': 19.67}
        """
        fixed = self.fixef
        out: dict[str, pd.DataFrame] = {}
        for group, modes in self.ranef.items():
            columns = ["Intercept" if column == "(Intercept)" else column for column in modes.columns]
            random_only = list(dict.fromkeys(c for c in columns if c not in fixed.index))
            names = random_only + list(fixed.index)
            values = np.tile(np.r_[np.zeros(len(random_only)), fixed.to_numpy()], (len(modes), 1))
            position = {name: j for j, name in enumerate(names)}
            for j, column in enumerate(columns):
                values[:, position[column]] += modes.iloc[:, j].to_numpy()
            out[group] = pd.DataFrame(values, index=modes.index.copy(), columns=names)
        return out

    # --- inference -------------------------------------------------------------------------
    @cached_property
    def variance_derivatives(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, J): the asymptotic covariance of (θ, σ) and the derivatives of Var(β̂) in them,
        shared by the Satterthwaite t and F tests. Computed on first use."""
        from lmmfast.inference.satterthwaite import variance_derivatives

        return variance_derivatives(self)

    def test_contrasts(self, contrasts: np.ndarray | pd.DataFrame) -> dict[str, float]:
        """Joint F test of Lβ = 0 with Satterthwaite's denominator df (lmerTest's method);
        see :func:`lmmfast.inference.ftest.contrast_test`."""
        from lmmfast.inference.ftest import contrast_test

        return contrast_test(self, contrasts)

    def anova_terms(self) -> pd.DataFrame:
        """One joint F test per fixed-effects term; see :func:`lmmfast.inference.ftest.term_tests`."""
        from lmmfast.inference.ftest import term_tests

        return term_tests(self)

    @cached_property
    def coef_table(self) -> pd.DataFrame:
        """Fixed effects with Satterthwaite df and p-values (lmerTest's method): columns
        ``estimate, std_error, df, t_value, p_value``. Computed on first use (finite
        differences of the deviance: about 8 (m+1)² evaluations for m covariance parameters)."""
        from lmmfast.inference import satterthwaite_table

        return satterthwaite_table(self)

    @cached_property
    def cond_var(self) -> dict[str, np.ndarray]:
        """Conditional covariance matrices of the random effects, per term name (VarCorr's
        names): arrays of shape (n_levels, k, k). Computed on first use (q solves)."""
        from lmmfast.inference.condvar import conditional_covariances

        return {term.name: block for term, block in zip(self.terms, conditional_covariances(self))}

    def ranef_table(self) -> pd.DataFrame:
        """Conditional modes and conditional sds per level (``grpvar, term, grp, condval, condsd``)."""
        from lmmfast.inference.condvar import ranef_table

        return ranef_table(self)

    def variance_decomposition(self) -> pd.DataFrame:
        """Variance components and their shares of the total (intraclass correlations for
        random-intercept models)."""
        from lmmfast.inference.condvar import variance_decomposition

        return variance_decomposition(self)

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        *,
        n: int = 1000,
        seed: int | None = None,
        boot_type: str = "percentile",
        processes: int = 1,
    ) -> pd.DataFrame:
        """Confidence intervals, columns ``lower`` and ``upper``.

        ``method="wald"``: fixed effects only, estimate ± z·SE (lme4's ``method = "Wald"``
        has none for variance parameters either). ``"profile"``: profile likelihood on the
        ML deviance, as lme4; rows are the variance parameters named as lme4 names them
        (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``) then the
        fixed effects. ``"boot"``: parametric bootstrap with ``n`` replicates, ``seed``,
        ``processes``, and ``boot_type`` ``"percentile"`` or ``"shortest"``.
        """
        from scipy import stats

        level = check_level(level)
        method = check_choice("confint method", method, ("wald", "profile", "boot"))
        if method == "profile":
            from lmmfast.inference.profile import profile_intervals

            return profile_intervals(self, level)
        if method == "boot":
            from lmmfast.inference.profile import bootstrap_intervals

            return bootstrap_intervals(self, n, level, seed=seed, kind=boot_type, processes=processes)
        z = stats.norm.ppf(0.5 + level / 2)
        se = self.stderr.to_numpy()
        return pd.DataFrame({"lower": self.beta - z * se, "upper": self.beta + z * se}, index=list(self.fixef_names))

    def profile(self, level: float = 0.99, points: int = 9) -> pd.DataFrame:
        """Profile traces (``parameter, value, zeta``) for plotting; see
        :func:`lmmfast.inference.profile.profile_traces`."""
        from lmmfast.inference.profile import profile_traces

        return profile_traces(self, level, points)

    def refit_ml(self) -> LmmResult:
        """This model refitted by maximum likelihood (itself if it already is), reusing the
        cross-products and the factorisation."""
        if not self.reml:
            return self
        from lmmfast.api import refit

        return refit(self.model, reml=False, start=self.theta)

    def predict(self, newdata: object, *, re: str = "all", new_levels: str = "population") -> np.ndarray:
        """Predicted means for new data; see :func:`lmmfast.predict.predict`."""
        from lmmfast.predict import predict

        return predict(self, newdata, re=re, new_levels=new_levels)

    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """Responses simulated from the fit, shape (nobs, nsim); see :func:`lmmfast.inference.bootstrap.simulate`."""
        from lmmfast.inference.bootstrap import simulate

        return simulate(self, nsim, seed)

    def refit(self, y: np.ndarray) -> LmmResult:
        """The same model fitted to a new response (one value per observation used)."""
        from lmmfast.inference.bootstrap import refit

        return refit(self, y)

    def bootstrap(self, n: int, *, seed: int | None = None, processes: int = 1, progress: bool = False) -> pd.DataFrame:
        """Parametric bootstrap replicates; see :func:`lmmfast.inference.bootstrap.bootstrap`."""
        from lmmfast.inference.bootstrap import bootstrap

        return bootstrap(self, n, seed=seed, processes=processes, progress=progress)

    def fitted(self) -> np.ndarray:
        """Fitted values Xβ̂ + Zb̂ of the observations used (complete cases, in order)."""
        return self.fitted_values.copy()

    def residuals(self, type: str = "response") -> np.ndarray:
        """Residuals of the observations used: ``"response"`` (y − fitted) or ``"pearson"``
        (scaled by √w, as lme4)."""
        if check_choice("residual type", type, ("response", "pearson")) == "response":
            return self.model.fixed.y - self.fitted_values
        return self.scaled_residuals * self.sigma

    # --- output ---------------------------------------------------------------------------------
    def summary(self, ddf: str = "auto") -> str:
        """The fit in lme4's printed layout, with lmerTest's Satterthwaite columns
        (``ddf="auto"``: when cheap; ``"satterthwaite"``: always; ``"none"``: never)."""
        from lmmfast.summary import format_summary

        return format_summary(self, ddf)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        """Two lines: formula, then criterion, observations and groups (``print(fit)`` or
        ``fit.summary()`` shows everything)."""
        groups = ", ".join(f"{name} ({count})" for name, count in self.ngrps.items())
        flags = "".join(
            [", boundary (singular) fit" if self.singular else "", "" if self.converged else ", not converged"]
        )
        criterion = "REML criterion" if self.reml else "deviance (ML)"
        return (
            f"<LmmResult: {self.formula}\n"
            f" {criterion} {self.objective:.3f}, {self.nobs} observations, groups: {groups}{flags}>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json``)."""

        def clean(value: float) -> float | None:
            return None if value is None or not np.isfinite(value) else float(value)

        return {
            "formula": self.formula,
            "criterion": self.criterion,
            "nobs": self.nobs,
            "n_dropped": len(self.dropped_rows),
            "ngrps": self.ngrps,
            "objective": self.objective,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "stderr": {k: float(v) for k, v in self.stderr.items()},
            "sigma": self.sigma,
            "theta": [float(t) for t in self.theta],
            "theta_names": list(self.theta_names),
            "varcorr": [
                {
                    "grp": row.grp,
                    "var1": row.var1,
                    "var2": row.var2,
                    "vcov": clean(row.vcov),
                    "sdcor": clean(row.sdcor),
                }
                for row in self.varcorr.itertuples(index=False)
            ],
            "converged": self.converged,
            "singular": self.singular,
            "n_evals": self.n_evals,
            "fit_seconds": self.fit_seconds,
            "optimizer": self.optsummary.algorithm,
            "dropped_columns": list(self.dropped_columns),
            "version": self.version,
        }
